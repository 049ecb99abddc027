"""`ksf embed`: face images -> one embedding row per image (`.npy`, `.csv`, `.npz` or CSV on stdout)."""

from __future__ import annotations

import click

from ksf.options import landmarks_option, model_option, out_option, report_errors, weights_option


def face_options(function):
    """Options `ksf embed` and `ksf verify` share: model, weights, how faces are aligned."""
    options = [
        model_option(help="Zoo model name (e.g. mobilefacenet), a .keras file, or an export folder of ksf export "
                          "(OUT/<name>/<version>, or OUT/<name> for its latest version)."),
        weights_option(),
        click.option("--detect", "align", flag_value="detect",
                     help="Find the face and its 5 landmarks with MTCNN (pip install 'keras-sphereface[detect]')."),
        landmarks_option(help="5-point landmark file (keys: image paths relative to any folder the images are in)."),
        click.option("--aligned", "align", flag_value="aligned",
                     help="The images are aligned crops of the model's input size (the default)."),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def align_mode(align: str | None, landmarks: str | None) -> str:
    """The `keras_sphereface.inference.files.ALIGN_MODES` entry the options ask for."""
    if landmarks is not None:
        if align is not None:
            raise click.UsageError("--landmarks, --detect and --aligned exclude each other.")
        return "landmarks"
    return align or "aligned"


@click.command("embed")
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGES_OR_DIR...")
@face_options
@out_option(None, "embeddings.npy (+ .index.tsv with the paths), .csv or .npz. Default: CSV on stdout.", name="out",
            file=True)
@report_errors
def embed(inputs, model, weights, align, landmarks, batch_size, out) -> None:
    """Embed face images: one L2-normalized row per image, in order; images without a usable face are
    listed with the reason (NaN row), and the exit code is then 1."""
    from keras_sphereface.inference.files import embed_files, embeddings_csv, write_embeddings

    table = embed_files(inputs, model, weights=weights, align=align_mode(align, landmarks),
                        landmarks=landmarks, batch_size=batch_size)
    if out is None:
        click.echo(embeddings_csv(table), nl=False)
    else:
        for path in write_embeddings(table, out):
            click.echo(f"wrote {path}", err=True)
    done = int(table.ok.sum())
    click.echo(f"{done} of {len(table.paths)} images embedded ({table.embeddings.shape[1]} values each) by "
               f"{table.model}", err=True)
    failures = table.failures
    for path, reason in failures:
        click.echo(f"  no embedding: {path}: {reason}", err=True)
    if failures:
        raise click.ClickException(f"{len(failures)} of {len(table.paths)} images have no embedding (listed above; "
                                   "their rows are empty / NaN).")
