"""Small helpers shared by every part of the package (no TensorFlow imports)."""

from keras_sphereface.utils.atomic import atomic_path, atomic_write, sha256_file
from keras_sphereface.utils.sizes import parse_size

__all__ = ["atomic_path", "atomic_write", "parse_size", "sha256_file"]
