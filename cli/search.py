"""`ksf search`: who is in these face images? Top-k gallery matches (`keras_sphereface.inference.search_images`)."""

from __future__ import annotations

import click

from ksf.embed import face_options
from ksf.options import LibraryChoice, align_mode, report_errors


@click.command("search")
@click.argument("gallery", type=click.Path(file_okay=False, exists=True))
@click.argument("images", nargs=-1, required=True, metavar="IMAGES_OR_DIR...")
@face_options
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True, help="Matches shown per image.")
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Cosine a match must exceed to be named (else 'unknown'). Default: the export's stored threshold.")
@click.option("--backend", type=LibraryChoice("keras_sphereface.inference.gallery", "SEARCH_BACKENDS"),
              default="exact", show_default=True,
              help="exact, or faiss (approximate, for very large galleries: pip install 'keras-sphereface[faiss]').")
@report_errors
def search(gallery: str, images: tuple[str, ...], model: str, weights: str | None, detect: bool, landmarks: str | None,
           aligned: bool, batch_size: int, top_k: int, threshold: float | None, backend: str) -> None:
    """Search face images in a gallery: each image's top-k matches (identity, score, image id) and its
    identity, or 'unknown' when the best score is not above the threshold. Images without a usable face are
    listed, and the exit code is then 1."""
    from keras_sphereface.inference import search_images

    report = search_images(gallery, images, model, weights=weights, align=align_mode(aligned, detect, landmarks),
                           landmarks=landmarks, top_k=top_k, threshold=threshold, backend=backend,
                           batch_size=batch_size)
    click.echo("\n".join(report.lines()))
    if report.failures:
        raise click.ClickException(f"{len(report.failures)} of {len(report.probes)} images have no usable face "
                                   "(listed above).")
