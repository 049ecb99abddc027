"""`Gallery`: add, remove, duplicates, save/load round trips, and refusals that leave the files on disk untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_sphereface.inference.gallery import (
    FORMAT_VERSION,
    IMAGE_IDS_NAME,
    MANIFEST_NAME,
    VECTORS_NAME,
    Gallery,
    GalleryError,
    GalleryModel,
)
from keras_sphereface.inference.search import exact_search

MODEL = GalleryModel("mobilefacenet", "ab" * 32, (112, 96), 16, "sphereface")


def _vectors(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 16)).astype(np.float32)


def _gallery(dtype: str = "float32", count: int = 6) -> Gallery:
    gallery = Gallery(MODEL, dtype)
    gallery.add(_vectors(count), [f"person{i % 3}" for i in range(count)], [f"person{i % 3}/{i}.jpg" for i in
                                                                            range(count)])
    return gallery


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_round_trip_keeps_rows_names_and_search_results(tmp_path, dtype):
    gallery = _gallery(dtype)
    gallery.save(tmp_path / "g")
    loaded = Gallery.load(tmp_path / "g", model=MODEL)
    assert loaded.dtype == dtype and len(loaded) == 6 and loaded.model == MODEL
    assert loaded.image_ids == gallery.image_ids and loaded.row_identities == gallery.row_identities
    np.testing.assert_array_equal(loaded.vectors(), gallery.vectors())
    queries = _vectors(4, seed=1)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.testing.assert_array_equal(loaded.search(queries, 3).indices, gallery.search(queries, 3).indices)
    manifest = json.loads((tmp_path / "g" / MANIFEST_NAME).read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["storage_dtype"] == dtype
    if dtype != "float32":
        np.testing.assert_allclose(loaded.vectors(), _gallery().vectors(), atol=4e-3)


def test_rows_are_stored_as_unit_vectors_and_searched_by_cosine():
    gallery = _gallery()
    np.testing.assert_allclose(np.linalg.norm(gallery.vectors(), axis=1), 1.0, rtol=1e-6)
    found = gallery.search(gallery.vectors()[2:3], 1)
    assert found.indices[0, 0] == 2 and found.scores[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_duplicate_ids_are_refused_unless_replaced():
    gallery = _gallery()
    with pytest.raises(GalleryError, match="already enrolled.*replace=True"):
        gallery.add(_vectors(1, 5), ["someone"], ["person0/0.jpg"])
    with pytest.raises(GalleryError, match="repeated in the input"):
        gallery.add(_vectors(2, 5), ["a", "a"], ["a/1.jpg", "a/1.jpg"])
    assert len(gallery) == 6
    new = _vectors(1, 5)
    assert gallery.add(new, ["someone"], ["person0/0.jpg"], replace=True) == 1
    assert len(gallery) == 6 and gallery.row_identities[gallery.image_ids.index("person0/0.jpg")] == "someone"
    np.testing.assert_allclose(gallery.vectors()[-1], new[0] / np.linalg.norm(new[0]), rtol=1e-6)


def test_remove_by_image_id_and_identity():
    gallery = _gallery()
    assert gallery.remove(image_ids=["person1/1.jpg"]) == 1
    assert gallery.remove(identities=["person2"]) == 2
    assert gallery.identities == ["person0", "person1"] and len(gallery) == 3
    assert gallery.row_identities == ["person0", "person0", "person1"]
    with pytest.raises(GalleryError, match="Not enrolled"):
        gallery.remove(image_ids=["nobody.jpg"])
    assert len(gallery) == 3


def test_empty_gallery_and_bad_vectors():
    gallery = Gallery(MODEL)
    with pytest.raises(GalleryError, match="empty"):
        gallery.search(_vectors(1), 1)
    with pytest.raises(GalleryError, match="16-d"):
        gallery.add(np.ones((1, 8), np.float32), ["a"], ["a/1.jpg"])
    with pytest.raises(ValueError, match="finite and non-zero"):
        gallery.add(np.zeros((1, 16), np.float32), ["a"], ["a/1.jpg"])


def test_truncated_file_is_refused_and_left_as_it_is(tmp_path):
    _gallery().save(tmp_path / "g")
    vectors = tmp_path / "g" / VECTORS_NAME
    vectors.write_bytes(vectors.read_bytes()[:-40])
    before = _snapshot(tmp_path / "g")
    with pytest.raises(GalleryError, match="truncated"):
        Gallery.load(tmp_path / "g")
    (tmp_path / "g" / MANIFEST_NAME).write_text('{"format": "keras_sphereface.gal')
    with pytest.raises(GalleryError, match="truncated or not valid JSON"):
        Gallery.load(tmp_path / "g")
    assert _snapshot(tmp_path / "g")[VECTORS_NAME] == before[VECTORS_NAME]


def test_changed_bytes_fail_the_checksum(tmp_path):
    _gallery().save(tmp_path / "g")
    ids = tmp_path / "g" / IMAGE_IDS_NAME
    ids.write_text(ids.read_text().replace("person0", "person9"))
    with pytest.raises(GalleryError, match="corrupt"):
        Gallery.load(tmp_path / "g")


@pytest.mark.parametrize("change", [{"input_size": (112, 112)}, {"name": "sphere20"}, {"fingerprint": "cd" * 32},
                                    {"embedding_dim": 512}])
def test_another_models_gallery_is_refused(tmp_path, change):
    import dataclasses

    _gallery().save(tmp_path / "g")
    before = _snapshot(tmp_path / "g")
    other = dataclasses.replace(MODEL, **change)
    field = next(iter(change))
    with pytest.raises(GalleryError, match=f"not comparable.*{'fingerprint' if field == 'fingerprint' else field}"):
        Gallery.load(tmp_path / "g", model=other)
    assert _snapshot(tmp_path / "g") == before


def test_newer_format_and_non_galleries_are_refused(tmp_path):
    _gallery().save(tmp_path / "g")
    manifest = json.loads((tmp_path / "g" / MANIFEST_NAME).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "g" / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(GalleryError, match="newer"):
        Gallery.load(tmp_path / "g")
    (tmp_path / "plain").mkdir()
    with pytest.raises(GalleryError, match="not a gallery"):
        Gallery.load(tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="Gallery not found"):
        Gallery.load(tmp_path / "missing")


def test_a_failed_save_leaves_the_previous_gallery(tmp_path, monkeypatch):
    _gallery(count=3).save(tmp_path / "g")
    before = _snapshot(tmp_path / "g")
    bigger = _gallery(count=6)
    calls, real_save = [], np.save

    def failing_save(file, array, allow_pickle=False):
        calls.append(file)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_save(file, array, allow_pickle=allow_pickle)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        bigger.save(tmp_path / "g")
    monkeypatch.undo()
    assert _snapshot(tmp_path / "g") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # no temporary left behind
    assert len(Gallery.load(tmp_path / "g", model=MODEL)) == 3


def test_blocked_gallery_search_is_the_exact_search_of_its_rows():
    gallery = _gallery(count=60)
    queries = gallery.vectors()[:5] + 0.1
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.testing.assert_array_equal(gallery.search(queries, 4, block_rows=7).indices,
                                  exact_search(gallery.vectors(), queries, 4).indices)
