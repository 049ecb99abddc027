"""`ksf enroll`: a folder of identity folders -> a face gallery (`keras_sphereface.inference.enroll_folder`)."""

from __future__ import annotations

import click

from ksf.embed import face_options
from ksf.options import LibraryChoice, align_mode, report_errors, workers_option


@click.command("enroll")
@click.argument("gallery", type=click.Path(file_okay=False))
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@face_options
@click.option("--replace", is_flag=True, help="Replace faces whose image id (path inside FOLDER) is already enrolled.")
@click.option("--dtype", type=LibraryChoice("keras_sphereface.inference.search", "STORAGE_DTYPES"), default=None,
              help="Storage of a new gallery: float32 (default), or float16 / bfloat16 (half the memory).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Embedding cache. Default: $KERAS_SPHEREFACE_HOME/cache/embeddings.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache.")
@workers_option("Threads that read, decode and align images.")
@report_errors
def enroll(gallery: str, folder: str, model: str, weights: str | None, detect: bool, landmarks: str | None,
           aligned: bool, batch_size: int, replace: bool, dtype: str | None, cache_dir: str | None, no_cache: bool,
           workers: int) -> None:
    """Enroll FOLDER/<identity>/<image> into the gallery folder GALLERY (created when missing). Images
    without a usable face are listed and skipped; the gallery is written once, atomically."""
    from keras_sphereface.inference import enroll_folder

    report = enroll_folder(gallery, folder, model, weights=weights, align=align_mode(aligned, detect, landmarks),
                           landmarks=landmarks, replace=replace, dtype=dtype, batch_size=batch_size,
                           cache_dir=False if no_cache else cache_dir, workers=workers)
    for path, reason in report.skipped:
        click.echo(f"  skipped: {path}: {reason}", err=True)
    click.echo(report.summary())
