"""Converters from other frameworks' checkpoints to keras_sphereface models.

- `torch_npz`: PyTorch state dicts saved as `.npz` (MobileFaceNet, IResNet), with the name maps of
  `torch_names`.
- `caffe`: Caffe `.caffemodel` files (SphereNet), read and written by the small protobuf
  wire-format codec in `caffe_proto` (no Caffe or protobuf dependency).
- `loaders.load_checkpoint`: one entry point over both; `files.convert_file`: checkpoint -> verified
  `.weights.h5` with a provenance sidecar.

`ksf convert` (a zoo model name -> converted weights) is `keras_sphereface.models.conversion`.
"""

from keras_sphereface.models.convert.loaders import CHECKPOINT_FORMATS, load_checkpoint

__all__ = ["CHECKPOINT_FORMATS", "load_checkpoint"]
