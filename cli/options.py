"""Options several `ksf` commands share, defined once; choice lists come from the library's constants.

The choice lists are read from the library when click first needs them (parsing or `--help`), so
defining a command imports no TensorFlow.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import click


class LibraryChoice(click.Choice):
    """A `click.Choice` whose choices are a constant of the library, imported on first use.

    Args:
        module: str. Module holding the constant, e.g. `"keras_sphereface.data.align"`.
        attribute: str. The constant: a tuple of names or a dict whose keys are the names.
    """

    def __init__(self, module: str, attribute: str):
        self._source = (module, attribute)
        self._loaded: tuple[str, ...] | None = None
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        """The names, read from the library once."""
        if self._loaded is None:
            module, attribute = self._source
            self._loaded = tuple(getattr(importlib.import_module(module), attribute))
        return self._loaded

    @choices.setter
    def choices(self, value) -> None:
        self._loaded = tuple(value)


def parse_size_option(_ctx, param, value):
    """Click callback: `HxW` -> `(height, width)` (None stays None), via `keras_sphereface.utils.parse_size`."""
    if value is None:
        return None
    from keras_sphereface.utils.sizes import parse_size

    try:
        return parse_size(value, what=param.name)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def model_option(required: bool = True, help: str | None = None) -> Callable:
    """`--model NAME_OR_PATH`: a zoo model name, a `.keras` file or a SavedModel directory."""
    return click.option(
        "--model", "model", required=required, metavar="NAME_OR_PATH",
        help=help or "Zoo model name (mobilefacenet, sphere20, ...), a .keras file or a SavedModel dir.",
    )


def _weights_value(_ctx, _param, value: str | None) -> str | None:
    """Click callback: `--weights none` means random weights (None); any other value is kept."""
    return None if value is None or value.lower() == "none" else value


def weights_option() -> Callable:
    """`--weights SOURCE`: a registry tag, a weights file, or 'none' for random weights (passed on as None)."""
    return click.option("--weights", default=None, metavar="SOURCE", callback=_weights_value,
                        help="Weights of a zoo model: a tag (casia, or one of your own), a .weights.h5 file, "
                             "or 'none' for random.")


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    """The library's errors for bad input: a missing file, a wrong value, a missing package, an unwritable disk."""
    from keras_sphereface.utils.disk import WriteError

    return (ValueError, FileNotFoundError, FileExistsError, ImportError, WriteError)


def report_errors(function: Callable) -> Callable:
    """Turns the library's bad-input errors (`_bad_input_errors`) into one clean CLI error (exit code 1)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if isinstance(error, _bad_input_errors()):
                raise click.ClickException(str(error)) from error
            raise

    return wrapper


def data_option(required: bool = True, help: str | None = None) -> Callable:
    """`--data DIR`: a dataset folder such as `$KSF_DATA_DIR/lfw`."""
    return click.option("--data", "data_dir", required=required, type=click.Path(file_okay=False, exists=True),
                        help=help or "Dataset folder, e.g. $KSF_DATA_DIR/lfw (images/ and landmarks.txt).")


def landmarks_option(help: str | None = None) -> Callable:
    """`--landmarks FILE`: a 5-point landmark file."""
    return click.option("--landmarks", type=click.Path(dir_okay=False, exists=True), default=None,
                        help=help or "5-point landmark file: `path x1 y1 ... x5 y5` per line.")


def align_mode(aligned: bool, detect: bool, landmarks: str | None, default: str = "aligned") -> str:
    """The alignment mode `--aligned`, `--landmarks FILE` or `--detect` asks for, else `default`.

    The modes are `keras_sphereface.data.face_source.ALIGN_MODES`; `default` may also be `"auto"`
    (`ksf eval`: landmarks when the data folder has its landmark file).
    """
    from keras_sphereface.data.face_source import ALIGN_MODES

    asked = [mode for mode, given in zip(ALIGN_MODES, (aligned, landmarks is not None, detect), strict=True) if given]
    if len(asked) > 1:
        raise click.UsageError("--landmarks, --detect and --aligned exclude each other.")
    return asked[0] if asked else default


def template_option() -> Callable:
    """`--template`: the alignment template (choices: `keras_sphereface.data.align.TEMPLATE_NAMES`)."""
    return click.option("--template", type=LibraryChoice("keras_sphereface.data.align", "TEMPLATE_NAMES"),
                        default="sphereface", show_default=True,
                        help="Alignment template (sphereface: 112x96 crops, arcface: 112x112).")


def interpolation_option() -> Callable:
    """`--interpolation`: the warp interpolation (choices: `keras_sphereface.data.align.INTERPOLATIONS`)."""
    return click.option("--interpolation", type=LibraryChoice("keras_sphereface.data.align", "INTERPOLATIONS"),
                        default="bilinear", show_default=True, help="Warp interpolation.")


def preprocess_option() -> Callable:
    """`--preprocess`: pixel preprocessing (choices: `keras_sphereface.models.preprocessing.PREPROCESSING`)."""
    return click.option("--preprocess",
                        type=LibraryChoice("keras_sphereface.models.preprocessing", "PREPROCESSING_NAMES"),
                        default="ksf", show_default=True, help="Pixel preprocessing: ksf = (x - 127.5) / 128.")


def protocol_option() -> Callable:
    """`--protocol`: the verification protocol (choices: `keras_sphereface.evaluation.protocol.PROTOCOLS`)."""
    return click.option(
        "--protocol", type=LibraryChoice("keras_sphereface.evaluation.protocol", "PROTOCOLS"),
        default="sphereface", show_default=True,
        help="sphereface: flip features concatenated, per-fold mean subtracted; summed: flip features "
             "added; plain: no flip.",
    )


def workers_option(help: str = "Parallel threads.") -> Callable:
    """`--workers N`: parallel threads or processes."""
    return click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help=help)


def no_progress_option() -> Callable:
    """`--no-progress`: hide progress bars."""
    return click.option("--no-progress", is_flag=True, help="No progress bar.")


def out_option(default: str | None, help: str, name: str = "out_dir", file: bool = False) -> Callable:
    """`--out PATH`: where a command writes (a folder unless `file`)."""
    kind = click.Path(dir_okay=False) if file else click.Path(file_okay=False)
    return click.option("--out", name, type=kind, default=default, show_default=default is not None, help=help)


def apply(*options: Callable) -> Callable:
    """Applies click options in the order given (the first appears first in `--help`)."""

    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function

    return decorate
