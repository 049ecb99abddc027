"""The preprocessing contract: what an exported face embedder expects, as a JSON file beside it.

`ksf export` writes one into every export (`<version dir>/assets.extra/ksf_contract.json`, next to
TF Serving's warm-up file; TF Serving ignores the rest of `assets.extra/`). Whoever loads the export
(`ksf embed`, `ksf verify`, `ksf eval --model EXPORT_DIR`, a client of the model server) reads it to
know the input size, channel order, pixel range, alignment template, the normalization already
inside the graph, the verification threshold and where that threshold came from.

This module is plain Python (`json` + `dataclasses`): reading a contract never loads TensorFlow.

    >>> contract = read_contract("exports/mobilefacenet/1")
    >>> contract.input_size, contract.threshold
    ((112, 96), 0.31)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from keras_sphereface.utils.atomic import atomic_write

#: File name of the contract.
CONTRACT_FILENAME = "ksf_contract.json"
#: Folder of an export that holds the contract (TF Serving's folder for extra files).
CONTRACT_SUBDIR = "assets.extra"
#: Schema version written by this code; a newer one is refused with a clear message.
FORMAT_VERSION = 1
#: How an image and its horizontal mirror are combined (`keras_sphereface.evaluation.protocol`):
#: `"none"` f(x); `"concat"` [f(x), f(flip x)] (the SphereFace protocol, `2 * dim`); `"sum"` f(x) + f(flip x).
FLIP_FUSIONS = ("none", "concat", "sum")
#: Export formats a contract can describe.
FORMATS = ("savedmodel", "tflite", "onnx")


class ContractError(ValueError):
    """A contract is missing, unreadable, invalid, or an input contradicts it."""


@dataclasses.dataclass(frozen=True)
class Contract:
    """What an exported embedder expects and returns.

    Attributes:
        model_name: str. The model, e.g. `"mobilefacenet"` (a zoo name) or a Keras model name.
        embedding_dim: int. Length `D` of the exported embedding (`2 * dim` with `"concat"` flip fusion).
        input_size: tuple of 2 ints. `(height, width)` of the aligned crops, in pixels.
        preprocessing: str. Key of `keras_sphereface.models.preprocessing.PREPROCESSING` the model
            was trained with (`"ksf"`).
        normalization: str. That mapping in words, e.g. `"(x - 127.5) / 128"`.
        alignment_template: str. `keras_sphereface.data.align` template name (`"sphereface"`).
        alignment_points: tuple of 5 `(x, y)` pairs. The template points in crop pixels: left eye,
            right eye, nose tip, left and right mouth corners.
        threshold: float or None. Cosine threshold for "same person" (`score > threshold`), None if
            none was recorded.
        threshold_protocol: str or None. Verification protocol that chose it (`"sphereface"`, ...).
        threshold_data: str or None. Pairs it was chosen on (e.g. `"LFW View 2 pairs.txt"`).
        threshold_source: str or None. Where it came from (a report path, a command, "given").
        threshold_accuracy: float or None. Mean k-fold accuracy of that evaluation, in `[0, 1]`.
        flip_fusion: str. One of `FLIP_FUSIONS`.
        channel_order: str. `"RGB"`.
        pixel_range: tuple of 2 floats. Pixel values the signatures take, `(0.0, 255.0)`.
        preprocessing_in_graph: bool. True when the exported signatures apply `normalization`
            themselves (clients send pixels).
        l2_normalized: bool. Whether the exported embeddings have unit L2 norm.
        signatures: tuple of str. The exported signatures / entry points.
        format: str. One of `FORMATS`.
        keras_sphereface_version: str. Version that wrote the export.
        format_version: int. Schema version (`FORMAT_VERSION`).
    """

    model_name: str
    embedding_dim: int
    input_size: tuple[int, int]
    preprocessing: str = "ksf"
    normalization: str = ""
    alignment_template: str = "sphereface"
    alignment_points: tuple[tuple[float, float], ...] = ()
    threshold: float | None = None
    threshold_protocol: str | None = None
    threshold_data: str | None = None
    threshold_source: str | None = None
    threshold_accuracy: float | None = None
    flip_fusion: str = "none"
    channel_order: str = "RGB"
    pixel_range: tuple[float, float] = (0.0, 255.0)
    preprocessing_in_graph: bool = True
    l2_normalized: bool = True
    signatures: tuple[str, ...] = ()
    format: str = "savedmodel"
    keras_sphereface_version: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        _validate(self)

    @property
    def embedder_preprocess(self) -> str:
        """str. The `Embedder` preprocessing key for this export: `"none"` when the graph normalizes."""
        return "none" if self.preprocessing_in_graph else self.preprocessing

    def describe_threshold(self) -> str:
        """One line: the threshold and where it came from, e.g. for `ksf verify`."""
        if self.threshold is None:
            return "no threshold recorded in the export's contract"
        parts = [f"{self.threshold:.4f} from the export's contract"]
        origin = ", ".join(
            text
            for text in (
                self.threshold_protocol and f"protocol {self.threshold_protocol}",
                self.threshold_data and f"data {self.threshold_data}",
                self.threshold_accuracy is not None and f"accuracy {100 * self.threshold_accuracy:.2f}%",
                self.threshold_source and f"source {self.threshold_source}",
            )
            if text
        )
        return f"{parts[0]} ({origin})" if origin else parts[0]

    def check_image_size(self, shape: tuple[int, ...], what: str = "image") -> None:
        """Raises `ContractError` unless `shape` `(height, width, ...)` matches `input_size`."""
        if tuple(int(v) for v in shape[:2]) != tuple(self.input_size):
            raise ContractError(
                f"{what} is {shape[0]}x{shape[1]} (height x width), but the export's contract says it takes "
                f"aligned {self.input_size[0]}x{self.input_size[1]} crops ({self.alignment_template} template). "
                f"Align the face first (--landmarks or --detect). Received: shape={tuple(shape)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The contract as JSON-ready data (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        """The contract as indented JSON text (ends with a newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Contract:
        """Builds a contract from `to_dict` data; unknown keys (from newer writers) are ignored.

        Raises:
            ContractError: a required field is missing, a value has the wrong type, or the schema
                version is newer than this code reads.
        """
        if not isinstance(data, dict):
            raise ContractError(f"{source}: a contract must be a JSON object. Received: {type(data).__name__}")
        version = data.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ContractError(
                f"{source}: contract format_version {version!r} is newer than this keras_sphereface reads "
                f"({FORMAT_VERSION}); upgrade keras_sphereface. Received: format_version={version!r}"
            )
        names = {field.name for field in dataclasses.fields(cls)}
        missing = [name for name in ("model_name", "embedding_dim", "input_size") if name not in data]
        if missing:
            raise ContractError(f"{source}: the contract lacks {missing}. Received: keys={sorted(data)}")
        kwargs = {key: value for key, value in data.items() if key in names}
        try:
            for key in ("input_size", "pixel_range", "signatures"):
                if key in kwargs:
                    kwargs[key] = tuple(kwargs[key])
            if "alignment_points" in kwargs:
                kwargs["alignment_points"] = tuple(tuple(float(v) for v in p) for p in kwargs["alignment_points"])
            return cls(**kwargs)
        except ContractError as error:
            raise ContractError(f"{source}: {error}") from error
        except (TypeError, ValueError) as error:
            raise ContractError(f"{source}: invalid contract ({error}).") from error

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> Contract:
        """Parses `to_json` text. Raises `ContractError` for invalid JSON or content."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ContractError(f"{source}: not valid JSON ({error}).") from error
        return cls.from_dict(data, source=source)


def _validate(contract: Contract) -> None:
    def fail(field: str, expected: str) -> None:
        raise ContractError(f"{field} must be {expected}. Received: {field}={getattr(contract, field)!r}")

    if not isinstance(contract.model_name, str) or not contract.model_name:
        fail("model_name", "a non-empty string")
    if not isinstance(contract.embedding_dim, int) or isinstance(contract.embedding_dim, bool) or \
            contract.embedding_dim < 1:
        fail("embedding_dim", "a positive integer")
    size = contract.input_size
    if not isinstance(size, tuple) or len(size) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size
    ):
        fail("input_size", "(height, width), two positive integers")
    if contract.flip_fusion not in FLIP_FUSIONS:
        fail("flip_fusion", f"one of {list(FLIP_FUSIONS)}")
    if contract.format not in FORMATS:
        fail("format", f"one of {list(FORMATS)}")
    if contract.threshold is not None:
        value = contract.threshold
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
                not -1.0 <= value <= 1.0:
            fail("threshold", "None or a cosine in [-1, 1]")
    if contract.channel_order not in ("RGB", "BGR"):
        fail("channel_order", "'RGB' or 'BGR'")
    if len(contract.alignment_points) not in (0, 5):
        fail("alignment_points", "5 (x, y) points")


def contract_path(export_dir: str | os.PathLike) -> Path:
    """Where the contract of an export version directory lives: `<dir>/assets.extra/ksf_contract.json`."""
    return Path(export_dir) / CONTRACT_SUBDIR / CONTRACT_FILENAME


def write_contract(export_dir: str | os.PathLike, contract: Contract) -> Path:
    """Writes `contract` into an export version directory, atomically.

    Args:
        export_dir: str or path-like. The export version directory (`DIR/<name>/<version>`, or the
            temporary directory that becomes it).
        contract: `Contract`.

    Returns:
        The path of the written file.
    """
    path = contract_path(export_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(contract.to_json())
    return path


def _version_dirs(base: Path) -> list[Path]:
    return sorted((p for p in base.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def resolve_export_dir(path: str | os.PathLike) -> Path:
    """The export version directory that `path` names.

    Accepts a version directory (`DIR/<name>/<version>`), the model's base directory
    (`DIR/<name>`: its highest numeric version, as TF Serving picks) or the contract file itself.

    Raises:
        FileNotFoundError: `path` does not exist.
        ContractError: `path` is a directory with neither a contract, a model file nor version folders.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Export not found. Received: path={str(path)!r}")
    if path.is_file():
        if path.name == CONTRACT_FILENAME:
            return path.parent.parent if path.parent.name == CONTRACT_SUBDIR else path.parent
        return path.parent
    if contract_path(path).is_file() or any((path / f).is_file() for f in MODEL_FILES):
        return path
    versions = _version_dirs(path)
    if versions:
        return versions[-1]
    raise ContractError(
        f"{path} is not an export: it has no {CONTRACT_SUBDIR}/{CONTRACT_FILENAME}, no model file "
        f"({', '.join(MODEL_FILES)}) and no numeric version folders. Received: path={str(path)!r}"
    )


#: Model files an export version directory holds, by format.
MODEL_FILES = ("saved_model.pb", "model.tflite", "model.onnx")


def is_export_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is an export version directory or a base directory with versions (no error)."""
    try:
        resolved = resolve_export_dir(path)
    except (FileNotFoundError, ContractError):
        return False
    return resolved.is_dir() and (
        contract_path(resolved).is_file() or any((resolved / f).is_file() for f in MODEL_FILES)
    )


def read_contract(export_dir: str | os.PathLike) -> Contract:
    """Reads the contract of an export.

    Args:
        export_dir: str or path-like. See `resolve_export_dir` (version dir, base dir or the file).

    Returns:
        The `Contract`.

    Raises:
        FileNotFoundError: `export_dir` does not exist.
        ContractError: the export has no contract (e.g. a SavedModel not written by `ksf export`),
            or it is not valid.
    """
    directory = resolve_export_dir(export_dir)
    path = contract_path(directory)
    if not path.is_file():
        raise ContractError(
            f"{directory} has no preprocessing contract ({CONTRACT_SUBDIR}/{CONTRACT_FILENAME}), so its input "
            f"size, alignment, normalization and threshold are unknown. Re-export it with `ksf export`, or "
            f"use it through `ksf eval --model DIR --preprocess ...`. Received: export_dir={str(export_dir)!r}"
        )
    return Contract.from_json(path.read_text(encoding="utf-8"), source=str(path))


def threshold_from_report(report_path: str | os.PathLike) -> dict[str, Any]:
    """The verification threshold of a `ksf eval` report (`report.json`) and where it came from.

    Args:
        report_path: str or path-like. A report written by `ksf eval lfw|pairs`.

    Returns:
        dict with `threshold` (the mean of the fold thresholds), `threshold_protocol`,
        `threshold_data`, `threshold_accuracy` and `threshold_source`: keyword arguments of `Contract`.

    Raises:
        FileNotFoundError: no such file.
        ContractError: not a verification report.
    """
    path = Path(report_path)
    if not path.is_file():
        raise FileNotFoundError(f"Evaluation report not found. Received: report={str(path)!r}")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ContractError(f"{path}: not valid JSON ({error}).") from error
    if not isinstance(report, dict) or "mean_threshold" not in report or "protocol" not in report:
        raise ContractError(
            f"{path} is not a `ksf eval` verification report (no mean_threshold/protocol). "
            f"Received: keys={sorted(report) if isinstance(report, dict) else type(report).__name__}"
        )
    data = report.get("dataset") or report.get("pairs_file")
    return {
        "threshold": float(report["mean_threshold"]),
        "threshold_protocol": str(report["protocol"]),
        "threshold_data": None if data is None else str(data),
        "threshold_accuracy": None if report.get("mean_accuracy") is None else float(report["mean_accuracy"]),
        "threshold_source": str(report.get("command") or path.name),
    }
