"""The root `ksf` group. Each command lives in its own module and is registered here."""

from __future__ import annotations

import importlib
import os
import sys

import click

from keras_sphereface.version import __version__

# (module inside the ksf package, attribute holding the click command or group)
_COMMANDS = (
    ("demo", "demo"),
    ("align", "align"),
    ("make_tfrecords", "make_tfrecords"),
    ("make_bin", "make_bin"),
    ("eval", "eval_group"),
    ("convert", "convert"),
    ("export", "export"),
    ("embed", "embed"),
    ("verify", "verify"),
    ("enroll", "enroll"),
    ("search", "search"),
    ("train", "train"),
)


# Commands that never load TensorFlow.
_WITHOUT_TENSORFLOW = ("align",)


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow and finds its devices with the C++ start-up lines (CUDA, oneDNN) kept off stderr.

    Those lines are printed by the native library while it loads, before any Python logging setting
    applies, so the process's stderr is pointed at /dev/null for the import alone. Python errors of
    the import still surface as exceptions.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        tensorflow.config.list_physical_devices()  # device discovery prints its own lines (cuInit) too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ksf")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's own start-up and log lines.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """keras_sphereface: SphereFace, ArcFace and CosFace face recognition for Keras 3."""
    if not verbose and ctx.invoked_subcommand not in _WITHOUT_TENSORFLOW and not ctx.resilient_parsing:
        _import_tensorflow_quietly()


for _module, _attribute in _COMMANDS:
    cli.add_command(getattr(importlib.import_module(f"ksf.{_module}"), _attribute))
