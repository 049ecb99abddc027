"""keras_sphereface.inference: face images -> embeddings, from any model a user names.

The floor between the models and their users (evaluation, the demo, `ksf embed` / `ksf verify`, export
checks). Bottom to top:

- `Embedder` (`embedder.py`): a model with its input size, preprocessing and fingerprint;
- loaders: `keras_embedder` (`keras_loader.py`), `savedmodel_embedder` (`savedmodel.py`, TensorFlow);
- `load_embedder` (`load.py`): a zoo name, `.keras` file, SavedModel directory or model -> `Embedder`;
  `EmbeddingCache` (`cache.py`); `embed_images` (`batch.py`): batched, cached, with mirrors.

Images come through `keras_sphereface.data.FaceSource` (read, decode, align). An export's
preprocessing contract is `contract.py` (JSON only); `files.py` runs `ksf embed` / `ksf verify`.
"""

import importlib

# Imported on first use, so reading an export's contract (`inference.contract`) loads no framework.
_LAZY = {
    "EmbeddingStats": "keras_sphereface.inference.batch",
    "check_input_size": "keras_sphereface.inference.batch",
    "embed_images": "keras_sphereface.inference.batch",
    "EmbeddingCache": "keras_sphereface.inference.cache",
    "default_cache_dir": "keras_sphereface.inference.cache",
    "Embedder": "keras_sphereface.inference.embedder",
    "keras_embedder": "keras_sphereface.inference.keras_loader",
    "keras_fingerprint": "keras_sphereface.inference.keras_loader",
    "directory_fingerprint": "keras_sphereface.inference.load",
    "load_embedder": "keras_sphereface.inference.load",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_sphereface.inference' has no attribute {name!r}")


__all__ = sorted(_LAZY)
