"""Small helpers shared by every part of the package (no TensorFlow imports)."""

from keras_sphereface.utils.atomic import atomic_files, atomic_path, atomic_write, sha256_file
from keras_sphereface.utils.disk import WriteError, describe_write_error
from keras_sphereface.utils.sizes import parse_size

__all__ = ["WriteError", "atomic_files", "atomic_path", "atomic_write", "describe_write_error", "parse_size",
           "sha256_file"]
