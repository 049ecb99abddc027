"""`ksf demo`: the main job on real data, as `make demo` runs it."""

from __future__ import annotations

import click


@click.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True), required=True,
              help="Data root holding lfw/ (e.g. ../shared/data).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/demo",
              show_default=True, help="Where the demo writes its report.")
@click.option("--epochs", default=30, show_default=True, help="Training epochs of each margin head.")
@click.option("--train-steps", type=click.IntRange(1), default=200, show_default=True,
              help="Steps of the from-scratch Sphere-4 training run (batch 64).")
def demo(data_dir: str, out_dir: str, epochs: int, train_steps: int) -> None:
    """Run the end-to-end demo on LFW (align, TFRecords, train, eval, export, verify) and write a report."""
    from keras_sphereface.demo import run_demo

    run_demo(data_dir, out_dir, epochs=epochs, train_steps=train_steps)
