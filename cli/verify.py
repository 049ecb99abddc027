"""`ksf verify`: are two face images the same person? Cosine score, decision, and where the threshold came from."""

from __future__ import annotations

import click

from ksf.embed import face_options
from ksf.options import align_mode, report_errors


@click.command("verify")
@click.argument("image_a", type=click.Path(dir_okay=False))
@click.argument("image_b", type=click.Path(dir_okay=False))
@face_options
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Cosine threshold (same = score > threshold). Default: the export's stored threshold.")
@report_errors
def verify(image_a: str, image_b: str, model: str, weights: str | None, detect: bool, landmarks: str | None,
           aligned: bool, batch_size: int, threshold: float | None) -> None:
    """Score two face images with a model and decide same / different person."""
    from keras_sphereface.inference import verify_pair

    result = verify_pair(image_a, image_b, model, weights=weights, align=align_mode(aligned, detect, landmarks),
                         landmarks=landmarks, threshold=threshold)
    click.echo(f"{result.path_a}\n{result.path_b}")
    click.echo(result.summary())
