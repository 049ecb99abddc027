"""keras_sphereface.export: face embedders for TensorFlow Serving, TFLite and ONNX (TensorFlow only).

- `export_model` / `export_savedmodel` / `export_tflite` / `export_onnx`: write `OUT/<name>/<version>/`
  atomically, with the preprocessing contract (`keras_sphereface.inference.contract`) beside the model.
- SavedModel signatures (`keras_sphereface.export.signatures`): `serving_default` (pixels -> embedding),
  `embed_jpeg` (encoded crops -> embedding), `verify` (two batches -> cosine `score`, `same`).
- `ksf export` is the command line; `docs/serving.md` the guide.
"""

from keras_sphereface.export.exporter import (
    FORMATS,
    MATCHING_PROTOCOL,
    ExportResult,
    ThresholdProtocolWarning,
    build_contract,
    export_model,
    export_onnx,
    export_savedmodel,
    export_tflite,
)
from keras_sphereface.export.resolve import ResolvedModel, embedding_network, resolve_model
from keras_sphereface.export.signatures import EMBED_JPEG, SERVING_DEFAULT, SIGNATURE_NAMES, VERIFY, ServingFunctions

__all__ = [
    "EMBED_JPEG",
    "FORMATS",
    "MATCHING_PROTOCOL",
    "SERVING_DEFAULT",
    "SIGNATURE_NAMES",
    "VERIFY",
    "ExportResult",
    "ResolvedModel",
    "ServingFunctions",
    "ThresholdProtocolWarning",
    "build_contract",
    "embedding_network",
    "export_model",
    "export_onnx",
    "export_savedmodel",
    "export_tflite",
    "resolve_model",
]
