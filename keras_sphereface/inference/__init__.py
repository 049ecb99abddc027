"""keras_sphereface.inference: face images -> embeddings, from any model a user names.

The floor between the models and their users (evaluation, the demo, `ksf embed` / `ksf verify`, export
checks). Bottom to top:

- `Embedder` (`embedder.py`): a model with its input size, preprocessing and fingerprint;
- loaders: `keras_embedder` (`keras_loader.py`), `savedmodel_embedder` (`savedmodel.py`, TensorFlow);
- `load_embedder` (`load.py`): a zoo name, `.keras` file, SavedModel directory or model -> `Embedder`;
  `open_face_model` there is its stricter form for image files (a folder must be an export with its contract);
- `EmbeddingCache` (`cache.py`); `embed_images` (`batch.py`): batched, threaded, cached, with mirrors: the
  one path from a `keras_sphereface.data.FaceSource` (read, decode, crop) to embeddings;
- image files (`ksf embed` / `ksf verify`): `collect_images`, `LandmarkLookup`, `files_source`
  (`image_files.py`: files -> a `FaceSource` by one of `data.face_source.ALIGN_MODES`), `EmbeddingTable` and its writers
  (`table.py`), `embed_files` (`files.py`), `verify_pair` (`verify.py`).
- 1:N search: `Gallery` and its folder format (`gallery.py`: add, remove, save, load, refusing another
  model's gallery), `exact_search` / `FaissIndex` (`search.py`: blocked exact cosine top-k, float16 or
  bfloat16 storage; the optional faiss backend), `enroll_folder` / `search_images` (`enroll.py`:
  `ksf enroll`, `ksf search`).

An export's preprocessing contract is `contract.py` (JSON only).
"""

import importlib

# Imported on first use, so reading an export's contract (`inference.contract`) loads no framework.
_LAZY = {
    "EmbeddingStats": "keras_sphereface.inference.batch",
    "check_input_size": "keras_sphereface.inference.batch",
    "embed_images": "keras_sphereface.inference.batch",
    "EmbeddingCache": "keras_sphereface.inference.cache",
    "default_cache_dir": "keras_sphereface.inference.cache",
    "open_cache": "keras_sphereface.inference.cache",
    "Embedder": "keras_sphereface.inference.embedder",
    "embed_files": "keras_sphereface.inference.files",
    "embed_image_files": "keras_sphereface.inference.files",
    "LandmarkLookup": "keras_sphereface.inference.image_files",
    "collect_images": "keras_sphereface.inference.image_files",
    "files_source": "keras_sphereface.inference.image_files",
    "keras_embedder": "keras_sphereface.inference.keras_loader",
    "keras_fingerprint": "keras_sphereface.inference.keras_loader",
    "directory_fingerprint": "keras_sphereface.inference.load",
    "load_embedder": "keras_sphereface.inference.load",
    "open_face_model": "keras_sphereface.inference.load",
    "EmbeddingTable": "keras_sphereface.inference.table",
    "OUTPUT_SUFFIXES": "keras_sphereface.inference.table",
    "embeddings_csv": "keras_sphereface.inference.table",
    "write_embeddings": "keras_sphereface.inference.table",
    "PairVerification": "keras_sphereface.inference.verify",
    "decision_threshold": "keras_sphereface.inference.verify",
    "verify_pair": "keras_sphereface.inference.verify",
    "EnrollReport": "keras_sphereface.inference.enroll",
    "ProbeResult": "keras_sphereface.inference.enroll",
    "SearchReport": "keras_sphereface.inference.enroll",
    "enroll_folder": "keras_sphereface.inference.enroll",
    "search_images": "keras_sphereface.inference.enroll",
    "Gallery": "keras_sphereface.inference.gallery",
    "GalleryError": "keras_sphereface.inference.gallery",
    "GalleryModel": "keras_sphereface.inference.gallery",
    "FaissIndex": "keras_sphereface.inference.search",
    "STORAGE_DTYPES": "keras_sphereface.inference.search",
    "SearchResult": "keras_sphereface.inference.search",
    "exact_search": "keras_sphereface.inference.search",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_sphereface.inference' has no attribute {name!r}")


__all__ = sorted(_LAZY)
