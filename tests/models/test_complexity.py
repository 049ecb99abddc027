"""count_macs against hand-computed multiply-accumulates."""

from __future__ import annotations

import keras

from keras_sphereface import models
from keras_sphereface.models.complexity import count_macs


def test_macs_of_a_small_model_by_hand():
    inputs = keras.Input((10, 12, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)  # 5x6x4 out, 3x3x3 taps
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 5x6x4 out, 3x3 taps
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(7)(x)
    model = keras.Model(inputs, outputs)
    assert count_macs(model) == 5 * 6 * 4 * 27 + 5 * 6 * 4 * 9 + 120 * 7


def test_mobilefacenet_and_sphere20_macs():
    # MobileFaceNet's paper: 221 million MAdds at 112x112.
    assert round(count_macs(models.MobileFaceNet(input_shape=(112, 112, 3))) / 1e6) == 221
    # Sphere-4 at 112x96 by hand: four 3x3 stride-2 convs and fc5.
    expected = (56 * 48 * 64 * 27 + 28 * 24 * 128 * 576 + 14 * 12 * 256 * 1152 + 7 * 6 * 512 * 2304
                + 7 * 6 * 512 * 512)
    assert count_macs(models.Sphere4()) == expected
    nested = keras.Sequential([keras.Input((112, 96, 3)), models.Sphere4()])
    assert count_macs(nested) == expected
