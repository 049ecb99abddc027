"""The figures of a run as it trains: TensorBoard scalars, `metrics.csv` and the console."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_sphereface.utils.atomic import atomic_write

LOG_DIR = "logs"
METRICS_CSV = "metrics.csv"
#: The columns of `metrics.csv`; a row leaves the figures it does not have empty.
METRIC_FIELDS = ("step", "epoch", "loss", "accuracy", "lambda", "lr", "images_per_s", "val_accuracy",
                 "wall_s", "warning")
_SCALARS = ("loss", "accuracy", "lambda", "lr", "images_per_s", "val_accuracy")


def write_scalar(tag: str, value: float) -> None:
    """Writes a TensorBoard scalar with TensorFlow's core summary op (no `tensorboard` package needed).

    Uses the default summary writer and step (`writer.as_default(step=...)`); the metadata names
    the `scalars` plugin, as `tf.summary.scalar` (from the tensorboard package) does.
    """
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)


def _is_figure(value) -> bool:
    return value is not None and value == value  # NaN != NaN


def figures_text(row: dict) -> str:
    """One console line of a row's figures: `epoch 0.12  loss 2.3026  accuracy 0.125  ...  val/lfw 91.20%`."""
    parts = [f"epoch {row['epoch']:.2f}"]
    for key, fmt in (("loss", "{:.4f}"), ("accuracy", "{:.3f}"), ("lambda", "{:.3g}"), ("lr", "{:.3g}"),
                     ("images_per_s", "{:.0f} img/s"), ("val_accuracy", "val {:.2%}")):
        value = row.get(key)
        if _is_figure(value):
            label = "" if key in ("images_per_s", "val_accuracy") else key
            parts.append(f"{label} {fmt.format(value)}".strip())
    parts += [f"{key} {value:.2%}" for key, value in row.items() if key.startswith("val/") and _is_figure(value)]
    return "  ".join(parts)


class TrainLogger:
    """Writes each row of figures to TensorBoard (`<out>/logs`), `<out>/metrics.csv` and the console.

    Args:
        out: Path or None. The run folder (None on a worker that is not the chief: console only).
        total_steps: int. The run's last step (the progress bar's total).
        start_step: int. The step the run starts from; `metrics.csv` rows after it are dropped
            (they belong to work the restored checkpoint does not hold).
        show_bar: bool. A `rich` progress bar instead of one printed line per row.
        extra_fields: sequence of str. More figures, as columns after `val_accuracy` and as scalars
            (the `val/<name>` of each `.bin` validation set).
    """

    def __init__(self, out: Path | None, total_steps: int, start_step: int, show_bar: bool,
                 extra_fields: Sequence[str] = ()):
        self.out = out
        at = METRIC_FIELDS.index("val_accuracy") + 1
        self.fields = (*METRIC_FIELDS[:at], *extra_fields, *METRIC_FIELDS[at:])
        self.scalars = (*_SCALARS, *extra_fields)
        self.writer = tf.summary.create_file_writer(str(out / LOG_DIR)) if out is not None else None
        self.csv_path = out / METRICS_CSV if out is not None else None
        if self.csv_path is not None:
            self._truncate_csv(start_step)
        self.progress = None
        self.task = None
        if show_bar:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[figures]}"))
            self.task = self.progress.add_task("train", total=total_steps, completed=start_step, figures="")
            self.progress.start()

    def _truncate_csv(self, start_step: int) -> None:
        rows = []
        if self.csv_path.is_file():
            with open(self.csv_path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= start_step]
        with atomic_write(self.csv_path) as handle:
            writer = csv.DictWriter(handle, self.fields, extrasaction="ignore")  # columns of this run
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict, echo: bool = True) -> None:
        """Writes one row (`METRIC_FIELDS` and the extra fields; missing figures are left empty).

        Args:
            row: dict. `step` and `epoch`, and any of the other fields.
            echo: bool. Also show it on the console (bar or printed line).
        """
        if self.writer is not None:
            with self.writer.as_default(step=int(row["step"])):
                for key in self.scalars:
                    if _is_figure(row.get(key)):
                        write_scalar(key, float(row[key]))
            self.writer.flush()
        if self.csv_path is not None:
            with open(self.csv_path, "a", newline="", encoding="utf-8") as handle:
                csv.DictWriter(handle, self.fields).writerow({k: row.get(k, "") for k in self.fields})
        if not echo:
            return
        text = figures_text(row)
        if self.progress is not None:
            self.progress.update(self.task, completed=int(row["step"]), figures=text)
        elif self.out is not None:
            print(f"step {int(row['step'])}  {text}", flush=True)

    def message(self, text: str) -> None:
        """Prints a line (above the bar when there is one)."""
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        """Stops the bar and closes the TensorBoard writer (call once, at the end of the run)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
