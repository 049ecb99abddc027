"""`ksf enroll` and `ksf search` end to end on real LFW photos (aligned by their landmarks) with a tiny model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from keras_sphereface.inference import Gallery, enroll_folder, search_images
from keras_sphereface.inference.gallery import VECTORS_NAME
from ksf.main import cli

pytestmark = pytest.mark.tf_backend

PEOPLE = ("Aaron_Peirsol", "Abdoulaye_Wade", "Abel_Pacheco")  # 4 LFW images each


def _tiny(path, seed: int = 0, dim: int = 8):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((112, 96, 3))
    x = keras.layers.Conv2D(4, 5, strides=4, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(dim)(x), name=f"tiny{seed}").save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return _tiny(folder / "tiny.keras"), _tiny(folder / "other.keras", seed=1)


@pytest.fixture
def people(tmp_path, lfw_dir):
    """FOLDER/<identity>/ links to 3 real LFW people, a loose image and an image without landmarks."""
    folder = tmp_path / "people"
    folder.mkdir()
    for name in PEOPLE:
        (folder / name).symlink_to(lfw_dir / "images" / name, target_is_directory=True)
    shutil.copy(lfw_dir / "images" / "AJ_Cook" / "AJ_Cook_0001.jpg", folder / "loose.jpg")
    (folder / "Nobody").mkdir()
    shutil.copy(lfw_dir / "images" / "AJ_Lamas" / "AJ_Lamas_0001.jpg", folder / "Nobody" / "face.jpg")
    return folder


def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_enroll_then_search_from_the_command_line(tmp_path, lfw_dir, people, models):
    tiny, other = models
    gallery = tmp_path / "gallery"
    marks = ["--landmarks", str(lfw_dir / "landmarks.txt")]
    result = _run(["enroll", str(gallery), str(people), "--model", str(tiny), *marks, "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "created, 12 faces enrolled, 2 skipped; 12 faces of 3 identities" in result.output
    assert "loose.jpg: not inside an identity folder" in result.output
    assert "Nobody/face.jpg" in result.output and "no landmarks" in result.output
    stored = Gallery.load(gallery)
    assert sorted(stored.identities) == sorted(PEOPLE) and stored.image_ids[0] == "Aaron_Peirsol/Aaron_Peirsol_0001.jpg"

    # a second enroll of the same images is refused before anything is embedded, the gallery unchanged
    before = (gallery / VECTORS_NAME).read_bytes()
    result = _run(["enroll", str(gallery), str(people), "--model", str(tiny), *marks, "--no-cache"])
    assert result.exit_code == 1 and "12 images of" in result.output and "--replace" in result.output
    result = _run(["enroll", str(gallery), str(people), "--model", str(tiny), *marks, "--replace", "--no-cache"])
    assert result.exit_code == 0 and "updated, 12 faces enrolled (12 replaced)" in result.output
    assert (gallery / VECTORS_NAME).read_bytes() == before  # the same faces give the same rows

    # an enrolled photo finds itself first (cosine 1); at threshold 1.0 nothing is named
    probe = lfw_dir / "images" / "Abel_Pacheco" / "Abel_Pacheco_0002.jpg"
    result = _run(["search", str(gallery), str(probe), "--model", str(tiny), *marks, "--top-k", "3",
                   "--threshold", "0.5"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "threshold: 0.5000 given on the command line (--threshold)"
    assert lines[1].endswith(": Abel_Pacheco")
    assert "Abel_Pacheco  1.0000  (Abel_Pacheco/Abel_Pacheco_0002.jpg)" in lines[2]
    assert len(lines) == 5
    result = _run(["search", str(gallery), str(probe), "--model", str(tiny), *marks, "--threshold", "1.0"])
    assert result.output.splitlines()[1].endswith(": unknown")

    # a probe without landmarks is named and counted; exit code 1
    result = _run(["search", str(gallery), str(probe), str(people / "Nobody" / "face.jpg"), "--model", str(tiny),
                   *marks])
    assert result.exit_code == 1 and "no face (" in result.output
    assert "1 of 2 images have no usable face" in result.output
    assert "carries no threshold; pass --threshold" in result.output

    # another model's gallery is refused, and left as it was
    result = _run(["search", str(gallery), str(probe), "--model", str(other), *marks])
    assert result.exit_code == 1 and "not comparable" in result.output
    assert (gallery / VECTORS_NAME).read_bytes() == before


def test_library_enroll_with_16_bit_storage_and_a_truncated_gallery(tmp_path, lfw_dir, people, models):
    tiny, _ = models
    gallery = tmp_path / "g16"
    report = enroll_folder(gallery, people, str(tiny), align="landmarks", landmarks=lfw_dir / "landmarks.txt",
                           dtype="float16")
    assert report.created and report.enrolled == 12 and len(report.skipped) == 2
    stored = Gallery.load(gallery)
    assert stored.dtype == "float16" and stored.nbytes == 12 * 8 * 2
    probes = [lfw_dir / "images" / name / f"{name}_0003.jpg" for name in PEOPLE]
    found = search_images(gallery, probes, str(tiny), align="landmarks", landmarks=lfw_dir / "landmarks.txt",
                          top_k=2, threshold=0.999)
    assert [p.matches[0][0] for p in found.probes] == list(PEOPLE)
    assert all(p.matches[0][2] == pytest.approx(1.0, abs=1e-3) for p in found.probes)
    with pytest.raises(ValueError, match="keeps the storage it was created with"):
        enroll_folder(gallery, people, str(tiny), align="landmarks", landmarks=lfw_dir / "landmarks.txt",
                      dtype="bfloat16", replace=True)
    vectors = gallery / VECTORS_NAME
    vectors.write_bytes(vectors.read_bytes()[:100])
    truncated = vectors.read_bytes()
    with pytest.raises(ValueError, match="truncated"):
        search_images(gallery, probes, str(tiny), align="landmarks", landmarks=lfw_dir / "landmarks.txt")
    assert vectors.read_bytes() == truncated
    empty = tmp_path / "empty"
    (empty / "Nobody").mkdir(parents=True)
    shutil.copy(people / "Nobody" / "face.jpg", empty / "Nobody" / "face.jpg")
    with pytest.raises(ValueError, match="No face of .* could be enrolled"):
        enroll_folder(tmp_path / "none", empty, str(tiny), align="landmarks", landmarks=lfw_dir / "landmarks.txt")
    assert not (tmp_path / "none").exists()
    assert np.isfinite(stored.vectors()).all()
