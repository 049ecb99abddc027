"""Small real datasets built once per session from `$KSF_DATA_DIR/lfw` in temporary folders."""

from __future__ import annotations

import pytest

from keras_sphereface.data.align import read_landmarks
from keras_sphereface.data.align_folder import align_folder
from tests.data.helpers import copy_people

NUM_PEOPLE = 6


@pytest.fixture(scope="session")
def lfw_subset(lfw_dir, tmp_path_factory):
    """`(photos, landmark_file, names)`: 6 real identities with 2-4 original photos each."""
    root = tmp_path_factory.mktemp("lfw_subset")
    photos = root / "photos"
    names = copy_people(lfw_dir, photos, NUM_PEOPLE, min_images=2, per_person=4)
    points = read_landmarks(lfw_dir / "landmarks.txt")
    lines = [f"{n}\t" + " ".join(repr(float(v)) for v in points[n].ravel()) for n in names]
    (root / "landmarks.txt").write_text("\n".join(lines) + "\n")
    return photos, root / "landmarks.txt", names


@pytest.fixture(scope="session")
def aligned_subset(lfw_subset, tmp_path_factory):
    """The same photos aligned to 112x96 (PNG-free: JPEG crops as `ksf align` writes them)."""
    photos, landmark_file, _ = lfw_subset
    out = tmp_path_factory.mktemp("aligned") / "crops"
    align_folder(photos, out, landmarks=landmark_file, progress=False, report_path=out.parent / "r.json")
    return out
