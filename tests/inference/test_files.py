"""Image files -> embedding rows, pair verification, alignment routes: all through `FaceSource` + `embed_images`."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

from keras_sphereface.data.face_source import FaceError, FaceSource
from keras_sphereface.inference import (
    LandmarkLookup,
    collect_images,
    embed_files,
    embed_images,
    files_source,
    open_face_model,
    verify_pair,
    write_embeddings,
)
from keras_sphereface.inference.contract import Contract, ContractError, write_contract

pytestmark = pytest.mark.tf_backend


def _tiny(dim: int = 8):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((112, 96, 3))
    x = keras.layers.Conv2D(4, 5, strides=4, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(dim)(x), name="tiny")


def _reference(model, crops) -> np.ndarray:
    from keras_sphereface.models.preprocessing import scale_pixels

    out = np.asarray(model.predict(scale_pixels(crops), verbose=0), dtype=np.float64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _write_png(path, image):
    from keras_sphereface.data.images import encode_image

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(image, "png"))
    return path


@pytest.fixture(scope="module")
def tiny():
    return _tiny()


@pytest.fixture
def crops():
    return np.random.default_rng(0).integers(0, 256, (3, 112, 96, 3), dtype=np.uint8)


def test_collect_images(tmp_path, crops):
    _write_png(tmp_path / "b" / "2.png", crops[0])
    _write_png(tmp_path / "a.PNG", crops[0])
    (tmp_path / "notes.txt").write_text("x")
    assert collect_images([tmp_path]) == [tmp_path / "a.PNG", tmp_path / "b" / "2.png"]
    assert collect_images([tmp_path / "notes.txt"]) == [tmp_path / "notes.txt"]  # named files are kept
    with pytest.raises(FileNotFoundError, match="not found"):
        collect_images([tmp_path / "missing.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images"):
        collect_images([tmp_path / "empty"])


def test_embed_files_keeps_a_row_for_every_image(tiny, tmp_path, crops):
    good = [_write_png(tmp_path / f"{i}.png", c) for i, c in enumerate(crops)]
    wrong = _write_png(tmp_path / "wrong.png", np.zeros((50, 50, 3), np.uint8))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    table = embed_files([good[0], wrong, good[1], broken, good[2]], tiny)
    assert table.paths[1] == str(wrong) and table.ok.tolist() == [True, False, True, False, True]
    assert "50x50" in table.errors[1] and "112x96" in table.errors[1]
    assert "unreadable image" in table.errors[3]
    assert np.isnan(table.embeddings[[1, 3]]).all()
    np.testing.assert_allclose(table.embeddings[[0, 2, 4]], _reference(tiny, crops), atol=1e-5)
    assert [p for p, _ in table.failures] == [str(wrong), str(broken)]


def test_write_embeddings_formats(tiny, tmp_path, crops):
    images = [_write_png(tmp_path / "in" / f"{i}.png", c) for i, c in enumerate(crops[:2])]
    broken = tmp_path / "in" / "x.jpg"
    broken.write_bytes(b"nope")
    table = embed_files([*images, broken], tiny)
    npy, index = write_embeddings(table, tmp_path / "out" / "e.npy")
    assert index.name == "e.index.tsv" and np.load(npy).shape == (3, 8)
    assert index.read_text().splitlines()[3].startswith(f"2\t{broken}\t")
    (path,) = write_embeddings(table, tmp_path / "out" / "e.csv")
    rows = list(csv.reader(path.open()))
    assert rows[0][:3] == ["path", "status", "e0"] and rows[1][1] == "ok" and rows[3][2:] == [""] * 8
    np.testing.assert_allclose(np.array(rows[1][2:], float), table.embeddings[0], atol=1e-6)
    (path,) = write_embeddings(table, tmp_path / "out" / "e.npz")
    with np.load(path) as stored:
        assert stored["paths"].tolist() == table.paths and stored["status"][0] == "ok"
    with pytest.raises(ValueError, match="--out must end with"):
        write_embeddings(table, tmp_path / "e.txt")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e.csv", "e.index.tsv", "e.npy", "e.npz"]


@pytest.mark.slow
def test_landmarks_route_on_real_lfw_images(tiny, lfw_dir):
    from keras_sphereface.data import align_face, load_image_rgb, read_landmarks

    name = "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    lookup = LandmarkLookup(lfw_dir / "landmarks.txt")
    image = lfw_dir / "images" / name
    np.testing.assert_array_equal(lookup.find(image), read_landmarks(lfw_dir / "landmarks.txt")[name])
    assert lookup.find(lfw_dir / "elsewhere.jpg") is None
    table = embed_files([image], tiny, align="landmarks", landmarks=lfw_dir / "landmarks.txt")
    crop = align_face(load_image_rgb(image), lookup.find(image))
    np.testing.assert_allclose(table.embeddings, _reference(tiny, crop[None]), atol=1e-5)


def _crop(source: FaceSource, path) -> np.ndarray:
    data, _ = source.read(str(path))
    return source.crop(str(path), data)


def test_detect_route(tiny, tmp_path, crops, monkeypatch):
    image = _write_png(tmp_path / "face.png", np.zeros((150, 150, 3), np.uint8))
    face_model = open_face_model(tiny)

    class NoFace:
        def landmarks(self, image):
            return None, {"faces": 0}

    class Centre:
        def landmarks(self, image):
            from keras_sphereface.data.align import get_template

            return get_template("sphereface", (112, 96)) + 20.0, {"faces": 1}

    with pytest.raises(FaceError, match="no face found"):
        _crop(files_source(face_model, [image], "detect", detector=NoFace()), image)
    assert _crop(files_source(face_model, [image], "detect", detector=Centre()), image).shape == (112, 96, 3)
    table = embed_files([image, image], face_model, align="detect", detector=NoFace())
    assert table.ok.tolist() == [False, False] and "no face found" in table.errors[0]
    assert table.embeddings.shape == (2, 0)  # no contract, no row: the width is unknown
    monkeypatch.setitem(sys.modules, "mtcnn", None)
    with pytest.raises(ImportError, match=r"keras-sphereface\[detect\]"):
        _crop(files_source(face_model, [image], "detect"), image)
    with pytest.raises(ImportError, match=r"keras-sphereface\[detect\]"):
        embed_files([image], face_model, align="detect")


def test_verify_pair_threshold_origin(tiny, tmp_path, crops):
    a, b = _write_png(tmp_path / "a.png", crops[0]), _write_png(tmp_path / "b.png", crops[1])
    result = verify_pair(a, b, tiny)
    expected = float(np.dot(*_reference(tiny, crops[:2])))
    assert result.score == pytest.approx(expected, abs=1e-5)
    assert result.same is None and "carries no threshold" in result.threshold_origin
    given = verify_pair(a, a, tiny, threshold=0.5)
    assert given.same is True and "given on the command line" in given.threshold_origin
    assert "same person" in given.summary()
    with pytest.raises(FaceError, match="unreadable"):
        verify_pair(a, tmp_path / "missing.png", tiny)


def test_open_face_model_refuses_folders_that_are_not_savedmodel_exports(tmp_path):
    with pytest.raises(ContractError, match="not an export"):
        open_face_model(tmp_path)
    version = tmp_path / "m-tflite" / "1"
    version.mkdir(parents=True)
    (version / "model.tflite").write_bytes(b"")
    write_contract(version, Contract("m", 8, (112, 96), format="tflite"))
    with pytest.raises(ContractError, match="tflite export"):
        open_face_model(version.parent)


def test_bad_align_mode(tiny, tmp_path, crops):
    with pytest.raises(ValueError, match="align must be one of"):
        FaceSource.for_mode("guess")
    with pytest.raises(ValueError, match="needs a landmark file"):
        FaceSource.for_mode("landmarks")
    image = _write_png(tmp_path / "a.png", crops[0])
    with pytest.raises(ValueError, match="align must be one of"):
        embed_files([image], tiny, align="guess")
    with pytest.raises(ValueError, match="not both"):
        FaceSource(tmp_path, {}, detector="mtcnn")


@pytest.mark.slow
def test_one_path_embed_files_is_embed_images_on_a_face_source(tiny, lfw_dir, tmp_path):
    from keras_sphereface.data import read_landmarks

    names = ["Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg",
             "Amber_Tamblyn/Amber_Tamblyn_0001.jpg"]
    embedder = open_face_model(tiny)
    source = FaceSource(lfw_dir / "images", read_landmarks(lfw_dir / "landmarks.txt"))
    rows, _, _ = embed_images(embedder, names, source, flip=False, progress=False)
    expected = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    photos = embed_files([lfw_dir / "images" / n for n in names], embedder, align="landmarks",
                         landmarks=lfw_dir / "landmarks.txt")
    np.testing.assert_allclose(photos.embeddings, expected, atol=1e-6)
    # The same crops saved as (lossless) files and embedded as aligned crops: the same rows.
    files = [_write_png(tmp_path / "crops" / f"{i}.png", _crop(source, n)) for i, n in enumerate(names)]
    np.testing.assert_allclose(embed_files(files, embedder).embeddings, expected, atol=1e-6)
    # With a cache folder, the second call is served from the cache, bit for bit.
    first = embed_files(files, embedder, cache_dir=tmp_path / "cache")
    second = embed_files(files, embedder, cache_dir=tmp_path / "cache")
    assert (first.stats.computed, first.stats.cached) == (3, 0)
    assert (second.stats.computed, second.stats.cached) == (0, 3)
    np.testing.assert_array_equal(second.embeddings, first.embeddings)


def test_ksf_embed_cli_cache_and_failures(tiny, tmp_path, crops):
    from click.testing import CliRunner

    from ksf.main import cli

    model = tmp_path / "tiny.keras"
    tiny.save(model)
    folder = tmp_path / "faces"
    for i, crop in enumerate(crops):
        _write_png(folder / f"{i}.png", crop)
    (folder / "z.png").write_bytes(b"not a png")
    args = ["embed", str(folder), "--model", str(model), "--cache-dir", str(tmp_path / "cache")]
    first = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "e.npy")])
    assert first.exit_code == 1, first.output  # z.png: named, counted, its row NaN
    assert "3 of 4 images embedded" in first.output and "z.png: unreadable image" in first.output
    assert "from the cache" not in first.output
    second = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "e.csv")])
    assert second.exit_code == 1 and "3 from the cache" in second.output
    uncached = CliRunner().invoke(cli, [*args, "--no-cache", "--out", str(tmp_path / "f.npy")])
    assert uncached.exit_code == 1 and "from the cache" not in uncached.output
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy")[:3], np.load(tmp_path / "f.npy")[:3])
    both = CliRunner().invoke(cli, ["embed", str(folder), "--model", str(model), "--aligned", "--detect"])
    assert both.exit_code == 2 and "exclude each other" in both.output
