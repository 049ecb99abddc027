"""Small real inputs for the reliability tests, built from `$KSF_DATA_DIR/lfw` in temporary folders."""

from __future__ import annotations

import pytest

from keras_sphereface.data.align import align_face, load_image_rgb, read_landmarks
from tests.data.helpers import people_with_images as first_people


@pytest.fixture(scope="session")
def lfw_points(lfw_dir):
    """The real LFW landmark file, read once: relative path -> `(5, 2)` points."""
    return read_landmarks(lfw_dir / "landmarks.txt")


@pytest.fixture(scope="session")
def real_crops(lfw_dir, lfw_points):
    """`(name, uint8 (112, 96, 3) RGB crop)` of 6 real LFW photos of 3 people, aligned as `ksf align` does."""
    crops = []
    for person in first_people(lfw_dir, 3):
        for path in sorted((lfw_dir / "images" / person).glob("*.jpg"))[:2]:
            name = f"{person}/{path.name}"
            crops.append((name, align_face(load_image_rgb(path), lfw_points[name])))
    return crops
