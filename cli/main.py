"""The root `ksf` group. Each command lives in its own module and is registered here."""

from __future__ import annotations

import importlib

import click

from keras_sphereface.version import __version__

# (module inside the ksf package, attribute holding the click command or group)
_COMMANDS = (
    ("demo", "demo"),
    ("align", "align"),
    ("make_tfrecords", "make_tfrecords"),
    ("eval", "eval_group"),
    ("convert", "convert"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ksf")
def cli() -> None:
    """keras_sphereface: SphereFace, ArcFace and CosFace face recognition for Keras 3."""


for _module, _attribute in _COMMANDS:
    cli.add_command(getattr(importlib.import_module(f"ksf.{_module}"), _attribute))
