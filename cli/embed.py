"""`ksf embed`: face images -> one embedding row per image (`.npy`, `.csv`, `.npz` or CSV on stdout)."""

from __future__ import annotations

from collections.abc import Callable

import click

from ksf.options import (
    align_mode,
    apply,
    landmarks_option,
    model_option,
    out_option,
    report_errors,
    weights_option,
    workers_option,
)


def face_options(function: Callable) -> Callable:
    """Options `ksf embed` and `ksf verify` share: model, weights, how faces are aligned."""
    return apply(
        model_option(help="Zoo model name (e.g. mobilefacenet), a .keras file, or an export folder of ksf export "
                          "(OUT/<name>/<version>, or OUT/<name> for its latest version)."),
        weights_option(),
        click.option("--detect", is_flag=True,
                     help="Find the face and its 5 landmarks with MTCNN (pip install 'keras-sphereface[detect]')."),
        landmarks_option(help="5-point landmark file (keys: image paths relative to any folder the images are in)."),
        click.option("--aligned", is_flag=True,
                     help="The images are aligned crops of the model's input size (the default)."),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
    )(function)


@click.command("embed")
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGES_OR_DIR...")
@face_options
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Embedding cache. Default: $KERAS_SPHEREFACE_HOME/cache/embeddings.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache.")
@workers_option("Threads that read, decode and align images.")
@out_option(None, "embeddings.npy (+ .index.tsv with the paths), .csv or .npz. Default: CSV on stdout.", name="out",
            file=True)
@report_errors
def embed(inputs: tuple[str, ...], model: str, weights: str | None, detect: bool, landmarks: str | None, aligned: bool,
          batch_size: int, cache_dir: str | None, no_cache: bool, workers: int, out: str | None) -> None:
    """Embed face images: one L2-normalized row per image, in order; images without a usable face are
    listed with the reason (NaN row), and the exit code is then 1."""
    from keras_sphereface.inference import embed_files, embeddings_csv, write_embeddings

    table = embed_files(inputs, model, weights=weights, align=align_mode(aligned, detect, landmarks),
                        landmarks=landmarks, batch_size=batch_size, cache_dir=False if no_cache else cache_dir,
                        workers=workers)
    if out is None:
        click.echo(embeddings_csv(table), nl=False)
    else:
        for path in write_embeddings(table, out):
            click.echo(f"wrote {path}", err=True)
    done = int(table.ok.sum())
    cached = f"; {table.stats.cached} from the cache" if table.stats is not None and table.stats.cached else ""
    click.echo(f"{done} of {len(table.paths)} images embedded ({table.embeddings.shape[1]} values each) by "
               f"{table.model}{cached}", err=True)
    failures = table.failures
    for path, reason in failures:
        click.echo(f"  no embedding: {path}: {reason}", err=True)
    if failures:
        raise click.ClickException(f"{len(failures)} of {len(table.paths)} images have no embedding (listed above; "
                                   "their rows are empty / NaN).")
