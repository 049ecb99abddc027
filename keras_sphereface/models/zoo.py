"""The model zoo: one table from lower-case model names to everything known about each model.

Every consumer reads it: the converters (`ksf convert`), the MAC table of `docs/models.md`,
`ksf eval --model NAME`, `ksf train --model NAME` and `ksf export --model NAME`. A new model is one
`ModelSpec` row here (plus its builder in its family's module).

    >>> spec = get_model_spec("sphere20")
    >>> spec.builder_name, spec.input_size, spec.preprocessing
    ('Sphere20', (112, 96), 'ksf')
    >>> model = spec.build(weights=None)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras

from keras_sphereface.models import iresnet, mobilefacenet, sphere
from keras_sphereface.models.preprocessing import get_preprocessing


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model of the zoo.

    Attributes:
        name: str. Lower-case name used on the command line and in configs, e.g. `"sphere20"`.
        builder: callable. The public builder, e.g. `Sphere20(weights=None, input_shape=..., ...)`.
        family: str. `"sphere"`, `"mobilefacenet"` or `"iresnet"`.
        input_size: tuple of 2 ints. Default `(height, width)` of the input, in pixels.
        preprocessing: str. Key of `keras_sphereface.models.preprocessing.PREPROCESSING`.
        checkpoint_format: str or None. The other framework's checkpoint it converts from
            (`"caffe"`, `"torch-npz"`), None if none.
        torch_layout: str or None. The PyTorch name map (`convert.torch_names.TORCH_LAYOUTS` key).
    """

    name: str
    builder: Callable[..., keras.Model]
    family: str
    input_size: tuple[int, int]
    preprocessing: str = "ksf"
    checkpoint_format: str | None = None
    torch_layout: str | None = None

    @property
    def builder_name(self) -> str:
        """The builder's Python name (`"Sphere20"`): the registry's `model` field."""
        return self.builder.__name__

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Default `(height, width, 3)`."""
        return (*self.input_size, 3)

    @property
    def preprocess_input(self) -> Callable:
        """The pixel mapping the model expects (`uint8`/float RGB `[0, 255]` -> float32)."""
        return get_preprocessing(self.preprocessing)

    def build(self, **kwargs: Any) -> keras.Model:
        """Calls the builder with `kwargs` (`weights=`, `input_shape=`, `embedding_dim=`, `name=`)."""
        return self.builder(**kwargs)


def _sphere(builder) -> ModelSpec:
    return ModelSpec(builder.__name__.lower(), builder, "sphere", (112, 96), checkpoint_format="caffe")


def _iresnet(builder) -> ModelSpec:
    return ModelSpec(builder.__name__.lower(), builder, "iresnet", (112, 112), checkpoint_format="torch-npz",
                     torch_layout="iresnet")


_SPECS = (
    *(_sphere(b) for b in (sphere.Sphere4, sphere.Sphere10, sphere.Sphere20, sphere.Sphere36, sphere.Sphere64)),
    ModelSpec("mobilefacenet", mobilefacenet.MobileFaceNet, "mobilefacenet", (112, 96),
              checkpoint_format="torch-npz", torch_layout="mobilefacenet"),
    *(_iresnet(b) for b in (iresnet.IResNet18, iresnet.IResNet34, iresnet.IResNet50, iresnet.IResNet100)),
)

#: Lower-case model name -> `ModelSpec`, in zoo order.
ZOO: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
#: The model names, e.g. for a CLI choice list.
MODEL_NAMES: tuple[str, ...] = tuple(ZOO)


def get_model_spec(name: str) -> ModelSpec:
    """The `ModelSpec` of a model name, case-insensitive (`"sphere20"`, `"Sphere20"`, `"MobileFaceNet"`).

    Raises:
        ValueError: the name is not in the zoo; the message lists the names.
    """
    spec = ZOO.get(str(name).lower())
    if spec is None:
        raise ValueError(f"Unknown model; use one of {list(MODEL_NAMES)}. Received: model={name!r}")
    return spec


def build_model(name: str, **kwargs: Any) -> keras.Model:
    """Builds the zoo model `name` with the builder's keyword arguments (`weights=`, `input_shape=`, ...)."""
    return get_model_spec(name).build(**kwargs)
