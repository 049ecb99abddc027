"""Batched embedding: flips, the on-disk cache, fingerprints, model loading, size checks."""

from __future__ import annotations

import numpy as np
import pytest

from keras_sphereface.data.align import align_face, load_image_rgb, read_landmarks
from keras_sphereface.data.face_source import FaceSource
from keras_sphereface.inference import (
    EmbeddingCache,
    check_input_size,
    embed_images,
    keras_embedder,
    load_embedder,
)

from .conftest import tiny_model

PATHS = [
    "Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
    "George_W_Bush/George_W_Bush_0001.jpg",
    "George_W_Bush/George_W_Bush_0002.jpg",
    "Serena_Williams/Serena_Williams_0001.jpg",
    "Tony_Blair/Tony_Blair_0001.jpg",
]


@pytest.fixture(scope="module")
def landmarks(lfw_dir):
    return read_landmarks(lfw_dir / "landmarks.txt")


@pytest.fixture
def source(lfw_dir, landmarks):
    return FaceSource(lfw_dir / "images", landmarks)


def test_embeddings_match_direct_alignment_and_mirror(tiny, source, lfw_dir, landmarks):
    embedder = keras_embedder(tiny, batch_size=4)
    embeddings, flipped, stats = embed_images(embedder, PATHS, source, batch_size=2, progress=False)
    crops = np.stack([align_face(load_image_rgb(lfw_dir / "images" / p), landmarks[p]) for p in PATHS])
    x = (crops.astype(np.float32) - 127.5) / 128.0
    np.testing.assert_allclose(embeddings, tiny.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(flipped, tiny.predict(x[:, :, ::-1], verbose=0), atol=1e-5)
    assert not np.allclose(embeddings, flipped)
    assert (stats.images, stats.computed, stats.cached) == (5, 5, 0)


def test_cache_reuses_vectors_and_keys_on_model_and_preprocessing(tiny, source, tmp_path):
    embedder = keras_embedder(tiny)
    cache = EmbeddingCache(tmp_path, embedder.fingerprint)
    first, first_flip, _ = embed_images(embedder, PATHS[:3], source, cache=cache, progress=False)
    assert cache.path.is_file() and [p.name for p in tmp_path.iterdir()] == [cache.path.name]
    # A new cache object reads the file: everything comes from it, bit for bit.
    again = EmbeddingCache(tmp_path, embedder.fingerprint)
    second, second_flip, stats = embed_images(embedder, PATHS, source, cache=again, progress=False)
    assert (stats.cached, stats.computed) == (3, 2)
    np.testing.assert_array_equal(second[:3], first)
    np.testing.assert_array_equal(second_flip[:3], first_flip)
    # Other weights -> another fingerprint -> another cache file.
    other = keras_embedder(tiny_model(seed=1))
    assert other.fingerprint != embedder.fingerprint
    assert EmbeddingCache(tmp_path, other.fingerprint).entries == {}
    # Other preprocessing or other landmarks -> other keys.
    unit = keras_embedder(tiny, preprocess="unit")
    _, _, stats = embed_images(unit, PATHS[:1], source, cache=EmbeddingCache(tmp_path, unit.fingerprint),
                               progress=False)
    assert stats.computed == 1
    moved = dict(source.landmarks)
    moved[PATHS[0]] = moved[PATHS[0]] + 1.0
    shifted = FaceSource(source.root, moved)
    _, _, stats = embed_images(embedder, PATHS[:2], shifted, cache=EmbeddingCache(tmp_path, embedder.fingerprint),
                               progress=False)
    assert (stats.computed, stats.cached) == (1, 1)


def test_corrupt_cache_file_is_rebuilt(tiny, source, tmp_path):
    embedder = keras_embedder(tiny)
    cache = EmbeddingCache(tmp_path, embedder.fingerprint)
    cache.path.write_bytes(b"not an npz")
    _, _, stats = embed_images(embedder, PATHS[:2], source, cache=EmbeddingCache(tmp_path, embedder.fingerprint),
                               progress=False)
    assert stats.computed == 2
    assert len(EmbeddingCache(tmp_path, embedder.fingerprint).entries) == 4  # 2 images x (plain, mirror)


def test_input_size_mismatch_is_refused_before_reading(tmp_path):
    embedder = keras_embedder(tiny_model(input_shape=(112, 112, 3)))
    source = FaceSource(tmp_path / "does_not_exist", {})
    with pytest.raises(ValueError, match=r"takes 112x112 .* cropped to 112x96"):
        check_input_size(embedder, source)
    with pytest.raises(ValueError, match="Received: model input size=\\(112, 112\\), crop size=\\(112, 96\\)"):
        embed_images(embedder, ["missing.jpg"], source, progress=False)


def test_load_embedder_from_keras_file_and_zoo(tiny, tmp_path):
    path = tmp_path / "tiny.keras"
    tiny.save(path)
    loaded = load_embedder(path)
    direct = keras_embedder(tiny)
    assert loaded.fingerprint == direct.fingerprint
    images = np.random.default_rng(0).integers(0, 256, (3, 112, 96, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded(images), direct(images), atol=1e-6)
    with pytest.raises(ValueError, match="holds its own weights"):
        load_embedder(path, weights="casia")
    with pytest.raises(ValueError, match="neither a model file, a SavedModel directory nor a model of the zoo"):
        load_embedder("no_such_model")
    zoo = load_embedder("MobileFaceNet")  # random weights, by name (case-insensitive)
    assert zoo.input_size == (112, 96)


@pytest.mark.tf_backend
def test_savedmodel_gives_the_keras_embeddings(tiny, tmp_path):
    export = tmp_path / "exported"
    tiny.export(str(export), format="tf_saved_model", verbose=False)
    embedder = load_embedder(export)
    assert embedder.input_size == (112, 96)
    images = np.random.default_rng(1).integers(0, 256, (5, 112, 96, 3), dtype=np.uint8)
    np.testing.assert_allclose(embedder(images), keras_embedder(tiny)(images), atol=1e-5)


def test_last_partial_batch_gives_every_image_and_no_padding_rows(source):
    """5 images at batch 4: the last forward pass is padded to 4 rows; only the real rows come back."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(112, 96, 3))
    x = keras.layers.Conv2D(8, 5, strides=4, name="conv")(inputs)
    # Batch statistics would mix the zero padding into the real rows; inference uses the moving ones.
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(16)(x))
    model.get_layer("bn").moving_mean.assign(np.linspace(-0.5, 0.5, 8).astype(np.float32))
    batched, batched_flip, stats = embed_images(keras_embedder(model, batch_size=4), PATHS, source, batch_size=4,
                                                progress=False)
    one, one_flip, _ = embed_images(keras_embedder(model, batch_size=1), PATHS, source, batch_size=1,
                                    progress=False)
    assert batched.shape == one.shape == (5, 16) and batched_flip.shape == (5, 16)
    assert np.all(np.isfinite(batched)) and np.all(np.isfinite(batched_flip))
    np.testing.assert_allclose(batched, one, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batched_flip, one_flip, rtol=1e-5, atol=1e-5)
    assert len({row.tobytes() for row in batched}) == 5  # no row repeated or left as padding
    assert (stats.images, stats.computed) == (5, 5)
