"""build_training_model: a backbone plus a margin head, compiled and fitted."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_sphereface import layers, models


def _data(n=8, shape=(32, 32, 3), classes=5):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (n, *shape)).astype(np.float32)
    labels = rng.integers(0, classes, n).astype(np.int32)
    return images, labels


@pytest.mark.parametrize("make_head", [lambda: layers.MarginInnerProduct(5, m=4),
                                       lambda: layers.ArcFace(5, s=16.0, m=0.5),
                                       lambda: layers.CosFace(5, s=16.0, m=0.35)],
                         ids=["a-softmax", "arcface", "cosface"])
def test_compile_and_fit_two_steps(make_head):
    backbone = models.SphereNet((0, 1, 0, 0), input_shape=(32, 32, 3), embedding_dim=16)
    head = make_head()
    model = models.build_training_model(backbone, head)
    assert [tuple(t.shape) for t in model.inputs] == [(None, 32, 32, 3), (None,)]
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = _data()
    before = np.asarray(backbone.get_layer("fc5").kernel).copy()
    history = model.fit([images, labels], labels, batch_size=4, epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1 and np.isfinite(history.history["loss"][0])
    assert not np.array_equal(before, np.asarray(backbone.get_layer("fc5").kernel))  # the backbone trained
    logits = model.predict([images, labels], verbose=0)
    assert logits.shape == (8, 5) and logits.dtype == np.float32
    # At inference the head gives margin-free logits: the same as the head on the backbone's embeddings.
    plain = head([backbone(images), labels], training=False)
    assert np.allclose(logits, keras.ops.convert_to_numpy(plain), atol=1e-4)


def test_margin_changes_the_training_logits_only_for_the_label():
    backbone = models.SphereNet((0, 0, 0, 0), input_shape=(32, 32, 3), embedding_dim=8)
    model = models.build_training_model(backbone, layers.CosFace(5, s=10.0, m=0.4))
    images, labels = _data()
    train = keras.ops.convert_to_numpy(model([images, labels], training=True))
    infer = keras.ops.convert_to_numpy(model([images, labels], training=False))
    diff = infer - train
    onehot = np.eye(5, dtype=bool)[labels]
    assert np.allclose(diff[onehot], 10.0 * 0.4, atol=1e-4) and np.allclose(diff[~onehot], 0.0, atol=1e-5)


def test_bad_arguments():
    backbone = models.SphereNet((0, 0, 0, 0), input_shape=(32, 32, 3), embedding_dim=8)
    with pytest.raises(ValueError, match="head must be a Keras layer"):
        models.build_training_model(backbone, "arcface")
    with pytest.raises(ValueError, match="backbone must be a keras.Model"):
        models.build_training_model(backbone.get_layer("fc5"), layers.ArcFace(5))
    conv_only = keras.Model(backbone.input, backbone.get_layer("relu4_1").output)
    with pytest.raises(ValueError, match="embeddings"):
        models.build_training_model(conv_only, layers.ArcFace(5))


def test_build_training_model_lives_in_models_training_model():
    from keras_sphereface.models import training_model

    assert models.build_training_model is training_model.build_training_model
