"""Small helpers shared by every part of the package (no TensorFlow imports)."""

from keras_sphereface.utils.atomic import atomic_path, atomic_write, sha256_file

__all__ = ["atomic_path", "atomic_write", "sha256_file"]
