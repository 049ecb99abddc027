"""Small helpers shared by every part of the package (no TensorFlow imports)."""

from keras_sphereface.utils.atomic import atomic_path, atomic_write, sha256_file
from keras_sphereface.utils.paths import data_dir, weights_dir

__all__ = ["atomic_path", "atomic_write", "data_dir", "sha256_file", "weights_dir"]
