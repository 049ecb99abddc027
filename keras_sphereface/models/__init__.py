"""keras_sphereface.models: face-embedding backbones and their pretrained weights.

Builders (keras.applications style: `weights=None | tag | path`, `input_shape`, `embedding_dim`, `name`):

- `SphereNet`, `Sphere4`, `Sphere10`, `Sphere20`, `Sphere36`, `Sphere64` (SphereFace, Caffe layer names);
- `MobileFaceNet` (weights `"casia"`);
- `IResNet`, `IResNet18`, `IResNet34`, `IResNet50`, `IResNet100` (ArcFace's improved ResNet).

Every model takes aligned RGB faces preprocessed by its family's `preprocess_input`
(`(x - 127.5) / 128`) and returns float32 embeddings `(batch_size, embedding_dim)`.
`build_training_model(backbone, head)` joins a backbone and a margin head for `fit`.
Pretrained weights: `registry.json` (see `pretrained/README.md`), resolved by `weights.fetch_weights`.
"""

from keras_sphereface.models import iresnet, mobilefacenet, sphere
from keras_sphereface.models.complexity import count_macs
from keras_sphereface.models.iresnet import IResNet, IResNet18, IResNet34, IResNet50, IResNet100
from keras_sphereface.models.mobilefacenet import MobileFaceNet
from keras_sphereface.models.registry import get_entry, load_registry
from keras_sphereface.models.sphere import Sphere4, Sphere10, Sphere20, Sphere36, Sphere64, SphereNet
from keras_sphereface.models.training import build_training_model
from keras_sphereface.models.weights import (
    ChecksumError,
    WeightsNotFoundError,
    fetch_weights,
    weights_home,
)

__all__ = [
    "ChecksumError",
    "IResNet",
    "IResNet18",
    "IResNet34",
    "IResNet50",
    "IResNet100",
    "MobileFaceNet",
    "Sphere4",
    "Sphere10",
    "Sphere20",
    "Sphere36",
    "Sphere64",
    "SphereNet",
    "WeightsNotFoundError",
    "build_training_model",
    "count_macs",
    "fetch_weights",
    "get_entry",
    "iresnet",
    "load_registry",
    "mobilefacenet",
    "sphere",
    "weights_home",
]
