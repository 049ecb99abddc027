"""`export_model`: a face embedder as a TF Serving SavedModel, a TFLite model or an ONNX model.

Every format is written to `OUT/<name>/<version>/` atomically (see `keras_sphereface.export.layout`)
with the preprocessing contract in `assets.extra/ksf_contract.json`:

- `savedmodel`: `saved_model.pb` + `variables/` with the signatures `serving_default`, `embed_jpeg` and
  `verify` (`keras_sphereface.export.signatures`), TF Serving's warm-up file, example REST bodies;
  `OUT/models.config` and `OUT/README.md` are (re)written.
- `tflite`: `model.tflite` (signature `serving_default`), converted from a SavedModel of the same
  function: converting a concrete function directly was seen to give NaN, the SavedModel route matched
  Keras to 6e-7. TF Serving loads it from the same layout with `--prefer_tflite_model`.
- `onnx`: `model.onnx` (input `images`, output `embedding`) through `tf2onnx` (the `export` extra).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from keras_sphereface.export import layout, requests
from keras_sphereface.export.readme import readme_text
from keras_sphereface.export.resolve import ResolvedModel, resolve_model
from keras_sphereface.export.signatures import SERVING_DEFAULT, SIGNATURE_NAMES, ServingFunctions
from keras_sphereface.inference.contract import FLIP_FUSIONS, Contract, write_contract
from keras_sphereface.utils.atomic import atomic_write
from keras_sphereface.utils.disk import WriteError
from keras_sphereface.utils.types import ModelLike
from keras_sphereface.version import __version__

FORMATS = ("savedmodel", "tflite", "onnx")
#: Protocol whose threshold applies unchanged to the exported cosine, per flip fusion. `concat` matches
#: the `sphereface` protocol except for its per-fold mean subtraction, which a server cannot do.
MATCHING_PROTOCOL = {"none": "plain", "sum": "summed", "concat": "sphereface"}
DEFAULT_ONNX_OPSET = 17


class ThresholdProtocolWarning(UserWarning):
    """The stored threshold was chosen under another protocol than the export's flip fusion scores with."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        path: Path. The version directory `OUT/<name>/<version>`.
        name: str. The model name (folder and server name).
        version: int. The version number.
        format: str. `"savedmodel"`, `"tflite"` or `"onnx"`.
        contract: `Contract`. The contract written with it.
        files: tuple of Path. The main files (model file, contract, warm-up, config, README).
    """

    path: Path
    name: str
    version: int
    format: str
    contract: Contract
    files: tuple[Path, ...]


def _flip_fusion(value) -> str:
    if value is True:
        return "concat"
    if value is False or value is None:
        return "none"
    if value not in FLIP_FUSIONS:
        raise ValueError(f"flip_fusion must be a bool or one of {list(FLIP_FUSIONS)}. Received: flip_fusion={value!r}")
    return value


def _normalization(key: str) -> str:
    from keras_sphereface.models.preprocessing import get_preprocessing

    function = get_preprocessing(key)
    doc = (inspect.getdoc(function) or "").splitlines()
    return f"{key}: {function.__name__}" + (f" ({doc[0].rstrip('.')})" if doc else "")


def _alignment_template(input_size: tuple[int, int], template: str | None) -> tuple[str, list]:
    from keras_sphereface.data.align import get_template, template_for_size

    if template is None:
        template = template_for_size(input_size)
    # 4 decimals, as the templates are published (float32 would print as 30.294599533081055).
    return template, [[round(float(v), 4) for v in point] for point in get_template(template, input_size)]


def build_contract(
    resolved: ResolvedModel,
    flip_fusion: str,
    fmt: str,
    signatures: tuple[str, ...],
    threshold: dict,
    alignment_template: str | None = None,
) -> Contract:
    """The `Contract` of an export of `resolved` (see `keras_sphereface.inference.contract.Contract`).

    Args:
        resolved: `ResolvedModel`.
        flip_fusion: str. `"none"`, `"concat"` or `"sum"`.
        fmt: str. Export format.
        signatures: tuple of str. Exported signature names.
        threshold: dict. `threshold`, `threshold_protocol`, `threshold_data`, `threshold_source`,
            `threshold_accuracy` (values may be None).
        alignment_template: str or None. Template name; None picks the one whose native size is the
            model's input size (`"sphereface"` for 112x96, `"arcface"` for 112x112).
    """
    template, points = _alignment_template(resolved.input_size, alignment_template)
    dim = resolved.embedding_dim * (2 if flip_fusion == "concat" else 1)
    return Contract(
        model_name=resolved.name,
        embedding_dim=dim,
        input_size=resolved.input_size,
        preprocessing=resolved.preprocessing,
        normalization=_normalization(resolved.preprocessing),
        alignment_template=template,
        alignment_points=tuple(tuple(p) for p in points),
        flip_fusion=flip_fusion,
        signatures=tuple(signatures),
        format=fmt,
        keras_sphereface_version=__version__,
        **threshold,
    )


def _threshold_fields(
    flip_fusion: str,
    threshold: float | None,
    threshold_protocol: str | None,
    threshold_data: str | None,
    threshold_source: str | None,
    threshold_accuracy: float | None,
) -> dict:
    if threshold is None and any(v is not None for v in (threshold_protocol, threshold_data, threshold_accuracy)):
        raise ValueError("threshold_protocol/threshold_data/threshold_accuracy describe a threshold; pass threshold "
                         f"too. Received: threshold=None, threshold_protocol={threshold_protocol!r}")
    if threshold is not None:
        threshold = float(threshold)
        expected = MATCHING_PROTOCOL[flip_fusion]
        if threshold_protocol is not None and threshold_protocol != expected:
            warnings.warn(
                f"The threshold was chosen under the {threshold_protocol!r} protocol, but an export with "
                f"flip_fusion={flip_fusion!r} scores pairs as the {expected!r} protocol does"
                + (" without the per-fold mean subtraction" if expected == "sphereface" else "")
                + "; the stored threshold may not be optimal. Evaluate with --protocol "
                f"{expected} for a matching threshold.",
                ThresholdProtocolWarning,
                stacklevel=3,
            )
        threshold_source = threshold_source or "given"
    return {
        "threshold": threshold,
        "threshold_protocol": threshold_protocol,
        "threshold_data": threshold_data,
        "threshold_source": threshold_source,
        "threshold_accuracy": threshold_accuracy,
    }


def _crops(example_images, input_size) -> np.ndarray:
    if example_images is None:
        return requests.example_crops(input_size, 2)
    crops = np.asarray(example_images)
    if crops.ndim != 4 or crops.shape[0] < 2 or tuple(crops.shape[1:]) != (*input_size, 3) or crops.dtype != np.uint8:
        raise ValueError(f"example_images must be uint8 (n >= 2, {input_size[0]}, {input_size[1]}, 3) aligned crops. "
                         f"Received: shape={crops.shape}, dtype={crops.dtype}")
    return crops[:2]


def export_model(
    model: ModelLike,
    out_dir: str | os.PathLike,
    name: str | None = None,
    version: int | None = None,
    *,
    format: str = "savedmodel",
    weights: str | None = None,
    flip_fusion: bool | str = False,
    threshold: float | None = None,
    threshold_protocol: str | None = None,
    threshold_data: str | None = None,
    threshold_source: str | None = None,
    threshold_accuracy: float | None = None,
    preprocessing: str | None = None,
    alignment_template: str | None = None,
    warmup: bool = True,
    example_images: np.ndarray | None = None,
    onnx_opset: int = DEFAULT_ONNX_OPSET,
) -> ExportResult:
    """Exports a face-embedding network to `out_dir/<name>/<version>/`.

    Args:
        model: str, path-like or `keras.Model`. A zoo name (`keras_sphereface.models.zoo.MODEL_NAMES`),
            a `.keras` file, or a model (a training model is reduced to its embedding network).
        out_dir: str or path-like. The export root (TF Serving's `--model_base_path` parent).
        name: str or None. Folder / served model name; default the model's name (`"mobilefacenet"`),
            with `-tflite` / `-onnx` appended for those formats.
        version: int or None. Version folder; None means one more than the highest present (or 1).
            An existing version is never overwritten (`FileExistsError`).
        format: str. `"savedmodel"`, `"tflite"` or `"onnx"`.
        weights: str or None. Zoo models only: `None` (random), `"casia"`, or a weights file.
        flip_fusion: bool or str. False/`"none"`: f(x); True/`"concat"`: [f(x), f(flip x)] as the
            SphereFace protocol (embedding `2 * dim`); `"sum"`: f(x) + f(flip x). Always L2-normalized.
        threshold: float or None. Cosine threshold of `verify` (`same = score > threshold`), stored in
            the graph and the contract; None stores none (then `verify` requires a `threshold` input).
        threshold_protocol, threshold_data, threshold_source: str or None. Where the threshold came
            from (see `keras_sphereface.inference.contract.threshold_from_report`).
        threshold_accuracy: float or None. Accuracy of the evaluation that chose it, in `[0, 1]`.
        preprocessing: str or None. Pixel mapping key; None takes the zoo's (`"ksf"`).
        alignment_template: str or None. Template recorded in the contract; None picks it from the input size.
        warmup: bool. Write TF Serving's warm-up file (SavedModel only; needs `tensorflow-serving-api`).
        example_images: `uint8 (n >= 2, H, W, 3)` or None. Crops for the warm-up file and the example
            REST bodies; None uses synthetic gradients.
        onnx_opset: int. ONNX opset for `format="onnx"`.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError: bad arguments, unknown model, or no embedding network.
        FileExistsError: the version exists already.
        ImportError: a needed optional package is missing (`tensorflow-serving-api`, `tf2onnx`).
        WriteError: the disk is full or the folder read-only; names the file or version folder. A
            version folder appears complete or not at all; existing versions are never touched.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}. Received: format={format!r}")
    fusion = _flip_fusion(flip_fusion)
    threshold_info = _threshold_fields(
        fusion, threshold, threshold_protocol, threshold_data, threshold_source, threshold_accuracy
    )
    if version is not None:
        layout.check_version(version)
    if name is not None:
        layout.check_name(name)
    if format == "savedmodel" and warmup:
        requests._serving_protos()  # fail before the (slow) model build when the package is missing
    if format == "onnx":
        _import_tf2onnx()
    resolved = resolve_model(model, weights, preprocessing)
    functions = ServingFunctions(resolved, fusion, threshold_info["threshold"])
    name = layout.check_name(name or (resolved.name if format == "savedmodel" else f"{resolved.name}-{format}"))
    out_dir = Path(out_dir)
    model_dir = out_dir / name
    version = layout.next_version(model_dir) if version is None else version
    signatures = SIGNATURE_NAMES if format == "savedmodel" else (SERVING_DEFAULT,)
    contract = build_contract(resolved, fusion, format, signatures, threshold_info, alignment_template)
    crops = _crops(example_images, resolved.input_size)
    writers = {"savedmodel": _write_savedmodel, "tflite": _write_tflite, "onnx": _write_onnx}
    with layout.new_version_dir(model_dir, version) as tmp:
        files = writers[format](tmp, functions, name, crops, warmup=warmup, onnx_opset=onnx_opset)
        files.append(write_contract(tmp, contract))
        relative = [f.relative_to(tmp) for f in files]
    path = model_dir / str(version)
    files = [path / r for r in relative]
    if format == "savedmodel":
        readme = out_dir / "README.md"
        try:
            files.append(layout.write_models_config(out_dir))
            with atomic_write(readme) as handle:
                handle.write(readme_text(contract, name, version))
        except WriteError as error:
            raise error.with_hint(
                f"The version folder {path} is complete; {out_dir / 'models.config'} and {readme} may not list it "
                "yet (each holds its earlier or its new text, never half of one)."
            ) from error.__cause__
        files.append(readme)
    return ExportResult(path, name, version, format, contract, tuple(files))


def export_savedmodel(model: ModelLike, out_dir: str | os.PathLike, name: str | None = None,
                      version: int | None = None, **kwargs: Any) -> ExportResult:
    """`export_model(..., format="savedmodel")`: TF Serving's layout with three signatures. See `export_model`."""
    return export_model(model, out_dir, name, version, format="savedmodel", **kwargs)


def export_tflite(model: ModelLike, out_dir: str | os.PathLike, name: str | None = None,
                  version: int | None = None, **kwargs: Any) -> ExportResult:
    """`export_model(..., format="tflite")`: `model.tflite` with `serving_default`. See `export_model`."""
    return export_model(model, out_dir, name, version, format="tflite", **kwargs)


def export_onnx(model: ModelLike, out_dir: str | os.PathLike, name: str | None = None,
                version: int | None = None, **kwargs: Any) -> ExportResult:
    """`export_model(..., format="onnx")`: `model.onnx` (input `images`, output `embedding`). See `export_model`."""
    return export_model(model, out_dir, name, version, format="onnx", **kwargs)


def _write_savedmodel(directory: Path, functions: ServingFunctions, name: str, crops, warmup: bool, **_) -> list[Path]:
    functions.archive(SIGNATURE_NAMES).write_out(str(directory), verbose=False)
    files = [directory / "saved_model.pb"]
    if warmup:
        files.append(requests.write_warmup_file(directory, name, crops, functions.threshold))
    requests.write_rest_examples(directory, crops, functions.threshold)
    return files


def _write_tflite(directory: Path, functions: ServingFunctions, name: str, crops, **_) -> list[Path]:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="ksf-tflite-") as saved:
        functions.archive((SERVING_DEFAULT,)).write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SERVING_DEFAULT])
        flatbuffer = converter.convert()
    path = directory / "model.tflite"
    path.write_bytes(flatbuffer)
    return [path]


def _import_tf2onnx():
    try:
        import tf2onnx
    except ImportError as error:
        raise ImportError(
            "ONNX export needs the `tf2onnx` package (and onnxruntime to run the result): "
            "pip install 'keras-sphereface[export]'"
        ) from error
    return tf2onnx


def _write_onnx(directory: Path, functions: ServingFunctions, name: str, crops, onnx_opset: int, **_) -> list[Path]:
    import tensorflow as tf

    tf2onnx = _import_tf2onnx()
    spec = [functions.image_spec("images")]
    function = tf.function(functions.serving_default, input_signature=spec, autograph=False)
    path = directory / "model.onnx"
    tf2onnx.convert.from_function(function, input_signature=spec, opset=onnx_opset, output_path=str(path))
    return [path]
