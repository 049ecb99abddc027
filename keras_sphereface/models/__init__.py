"""keras_sphereface.models: face-embedding backbones and their pretrained weights.

Builders (keras.applications style: `weights=None | tag | path`, `input_shape`, `embedding_dim`, `name`):

- `SphereNet`, `Sphere4`, `Sphere10`, `Sphere20`, `Sphere36`, `Sphere64` (SphereFace, Caffe layer names);
- `MobileFaceNet` (weights `"casia"`);
- `IResNet`, `IResNet18`, `IResNet34`, `IResNet50`, `IResNet100` (ArcFace's improved ResNet).

`zoo` is the one table of the models by lower-case name (`get_model_spec("sphere20")`: builder,
family, input size, preprocessing, checkpoint layout). Every model takes aligned RGB faces
preprocessed by its family's `preprocess_input` (`preprocessing.scale_pixels`, `(x - 127.5) / 128`)
and returns float32 embeddings `(batch_size, embedding_dim)`. `build_training_model(backbone, head)`
joins a backbone and a margin head for `fit`; `fold_batch_norms(backbone)` is its inference copy with
each BatchNormalization folded into the convolution before it (what the export serves).

Weights: `registry` (the shipped `registry.json` plus your own tags), `store` (cache, checksums,
downloads), `resolver` (`weights=` -> verified file), `convert` (other frameworks' checkpoints),
`register_weights` (a file you trained -> a tag of your own).
"""

from keras_sphereface.models import iresnet, mobilefacenet, sphere, zoo
from keras_sphereface.models.complexity import count_macs
from keras_sphereface.models.conversion import convert_checkpoint
from keras_sphereface.models.folding import fold_batch_norms
from keras_sphereface.models.iresnet import IResNet, IResNet18, IResNet34, IResNet50, IResNet100
from keras_sphereface.models.mobilefacenet import MobileFaceNet
from keras_sphereface.models.prelu import PReLU
from keras_sphereface.models.register import register_weights
from keras_sphereface.models.registry import get_entry, load_registry
from keras_sphereface.models.resolver import fetch_weights
from keras_sphereface.models.sphere import Sphere4, Sphere10, Sphere20, Sphere36, Sphere64, SphereNet
from keras_sphereface.models.store import ChecksumError, WeightsNotFoundError, weights_home
from keras_sphereface.models.training_model import build_training_model
from keras_sphereface.models.zoo import MODEL_NAMES, ModelSpec, build_model, get_model_spec

__all__ = [
    "MODEL_NAMES",
    "ChecksumError",
    "IResNet",
    "IResNet18",
    "IResNet34",
    "IResNet50",
    "IResNet100",
    "MobileFaceNet",
    "ModelSpec",
    "PReLU",
    "Sphere4",
    "Sphere10",
    "Sphere20",
    "Sphere36",
    "Sphere64",
    "SphereNet",
    "WeightsNotFoundError",
    "build_model",
    "build_training_model",
    "convert_checkpoint",
    "count_macs",
    "fetch_weights",
    "fold_batch_norms",
    "get_entry",
    "get_model_spec",
    "iresnet",
    "load_registry",
    "mobilefacenet",
    "register_weights",
    "sphere",
    "weights_home",
    "zoo",
]
