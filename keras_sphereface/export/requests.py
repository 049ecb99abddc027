"""Requests that travel with an export: TF Serving's warm-up file and example REST bodies.

- `assets.extra/tf_serving_warmup_requests`: a TFRecord file of `tensorflow.serving.PredictionLog`
  records, one `PredictRequest` per signature, which TF Serving replays when it loads the version so
  that the first real request is not slow (needs `tensorflow-serving-api`, the `serving` extra).
- `assets.extra/examples/*.json`: bodies for `POST /v1/models/<name>:predict`, in TF Serving's row
  (`{"instances": ...}`) and columnar (`{"inputs": ...}`) formats, named in the export's README.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from keras_sphereface.export.signatures import EMBED_JPEG, SERVING_DEFAULT, VERIFY

if TYPE_CHECKING:
    from tensorflow_serving.apis.predict_pb2 import PredictRequest

WARMUP_FILENAME = "tf_serving_warmup_requests"
EXAMPLES_DIR = "examples"


def example_crops(input_size: tuple[int, int], count: int = 2) -> np.ndarray:
    """Deterministic synthetic RGB crops `uint8 (count, H, W, 3)` (smooth gradients) for warm-up and examples."""
    height, width = input_size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    crops = []
    for index in range(count):
        phase = 0.7 * index
        channels = [
            127.5 + 100.0 * np.sin(x / width * np.pi * (1 + c) + y / height * 2.0 + phase) for c in range(3)
        ]
        crops.append(np.stack(channels, axis=-1))
    return np.clip(np.rint(np.stack(crops)), 0, 255).astype(np.uint8)


def encode_png(crop: np.ndarray) -> bytes:
    """PNG bytes of an RGB `uint8 (H, W, 3)` crop (lossless, so decoding gives the same pixels)."""
    return tf.io.encode_png(tf.constant(crop, tf.uint8)).numpy()


def _serving_protos():
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError as error:
        raise ImportError(
            "TF Serving's warm-up file needs the `tensorflow-serving-api` package: "
            "pip install 'keras-sphereface[serving]' (or export with warmup=False / --no-warmup)"
        ) from error
    return predict_pb2, prediction_log_pb2


def signature_inputs(crops: np.ndarray, threshold: float | None) -> dict[str, dict[str, np.ndarray]]:
    """Signature name -> input arrays of one request each, built from `crops` `(n >= 2, H, W, 3)`.

    `verify` always carries a `threshold` (the stored one, else 0.0) so the request also replays
    through TensorFlow's Python loader, whose signature functions do not apply input defaults.
    """
    pixels = crops.astype(np.float32)
    return {
        SERVING_DEFAULT: {"images": pixels[:1]},
        EMBED_JPEG: {"images": np.array([encode_png(crops[0])], dtype=object)},
        VERIFY: {
            "images_a": pixels[:1],
            "images_b": pixels[1:2],
            "threshold": np.array(0.0 if threshold is None else threshold, dtype=np.float32),
        },
    }


def predict_request(model_name: str, signature: str, inputs: dict[str, np.ndarray]) -> PredictRequest:
    """A `tensorflow.serving.PredictRequest` for `signature` of `model_name`, as a client builds it."""
    predict_pb2, _ = _serving_protos()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def write_warmup_file(
    export_dir: str | os.PathLike, model_name: str, crops: np.ndarray, threshold: float | None
) -> Path:
    """Writes `assets.extra/tf_serving_warmup_requests` (one PredictionLog per signature) into `export_dir`.

    Args:
        export_dir: str or path-like. The (temporary) export version directory.
        model_name: str. `model_spec.name` of the requests.
        crops: `uint8 (n >= 2, H, W, 3)`. Images to send.
        threshold: float or None. The stored threshold (see `signature_inputs`).

    Returns:
        The file's path.
    """
    _, prediction_log_pb2 = _serving_protos()
    path = Path(export_dir) / "assets.extra" / WARMUP_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in signature_inputs(crops, threshold).items():
            request = predict_request(model_name, signature, inputs)
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def rest_bodies(crops: np.ndarray, threshold: float | None) -> dict[str, dict]:
    """File name -> JSON body of `POST /v1/models/<name>:predict` for each signature.

    Pixel values are written as integers 0..255 (TF Serving converts JSON numbers to the signature's
    float32); binary strings use TF Serving's `{"b64": ...}` form.
    """
    first, second = crops[0].tolist(), crops[1].tolist()
    png = base64.b64encode(encode_png(crops[0])).decode("ascii")
    verify_inputs = {"images_a": [first], "images_b": [second]}
    if threshold is None:
        verify_inputs["threshold"] = 0.5
    return {
        "serving_default.instances.json": {"signature_name": SERVING_DEFAULT, "instances": [first]},
        "serving_default.inputs.json": {"signature_name": SERVING_DEFAULT, "inputs": {"images": [first, second]}},
        "embed_jpeg.instances.json": {"signature_name": EMBED_JPEG, "instances": [{"b64": png}]},
        "verify.inputs.json": {"signature_name": VERIFY, "inputs": verify_inputs},
        "verify_threshold.inputs.json": {"signature_name": VERIFY, "inputs": {**verify_inputs, "threshold": 0.5}},
    }


def write_rest_examples(export_dir: str | os.PathLike, crops: np.ndarray, threshold: float | None) -> list[Path]:
    """Writes `rest_bodies` under `export_dir/assets.extra/examples/`; returns the paths."""
    folder = Path(export_dir) / "assets.extra" / EXAMPLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, body in rest_bodies(crops, threshold).items():
        path = folder / name
        path.write_text(json.dumps(body, separators=(",", ":")) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
