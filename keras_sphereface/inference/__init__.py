"""keras_sphereface.inference: face images -> embeddings, from any model a user names.

The floor between the models and their users (evaluation, the demo, `ksf embed` / `ksf verify`, export
checks). Bottom to top:

- `Embedder` (`embedder.py`): a model with its input size, preprocessing and fingerprint;
- loaders: `keras_embedder` (`keras_loader.py`), `savedmodel_embedder` (`savedmodel.py`, TensorFlow);
- `load_embedder` (`load.py`): a zoo name, `.keras` file, SavedModel directory or model -> `Embedder`;
  `EmbeddingCache` (`cache.py`); `embed_images` (`batch.py`): batched, cached, with mirrors.

Images come through `keras_sphereface.data.FaceSource` (read, decode, align).
"""

from keras_sphereface.inference.batch import EmbeddingStats, check_input_size, embed_images
from keras_sphereface.inference.cache import EmbeddingCache, default_cache_dir
from keras_sphereface.inference.embedder import Embedder
from keras_sphereface.inference.keras_loader import keras_embedder, keras_fingerprint
from keras_sphereface.inference.load import directory_fingerprint, load_embedder

__all__ = [
    "Embedder",
    "EmbeddingCache",
    "EmbeddingStats",
    "check_input_size",
    "default_cache_dir",
    "directory_fingerprint",
    "embed_images",
    "keras_embedder",
    "keras_fingerprint",
    "load_embedder",
]
