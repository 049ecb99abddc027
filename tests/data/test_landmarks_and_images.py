"""The landmark-file parser and image loading: real files and every bad input."""

from __future__ import annotations

import numpy as np
import pytest

from keras_sphereface.data import align
from keras_sphereface.data.images import decode_image_rgb, encode_image

ECKHART = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"


def test_reads_the_real_lfw_landmark_file(lfw_dir):
    landmarks = align.read_landmarks(lfw_dir / "landmarks.txt")
    lines = [line for line in (lfw_dir / "landmarks.txt").read_text().splitlines() if line.strip()]
    assert len(landmarks) == len(lines)
    assert len(landmarks) == sum(1 for _ in (lfw_dir / "images").glob("*/*.jpg"))
    first_path, *values = lines[0].split("\t")
    points = landmarks[first_path]
    assert points.dtype == np.float32 and points.shape == (5, 2)
    np.testing.assert_allclose(points.ravel(), [float(v) for v in values], rtol=1e-6)
    # Left eye left of the right eye, both above the nose, nose above the mouth.
    for pts in list(landmarks.values())[:200]:
        assert pts[0, 0] < pts[1, 0]
        assert max(pts[0, 1], pts[1, 1]) < pts[2, 1] < max(pts[3, 1], pts[4, 1])


def test_space_separated_lines_and_comments(tmp_path):
    path = tmp_path / "points.txt"
    path.write_text(
        "# a comment\n\na/b.jpg 1 2 3 4 5 6 7 8 9 10\nwith space/c.png\t1 2 3 4 5 6 7 8 9 10\n"
    )
    landmarks = align.read_landmarks(path)
    assert sorted(landmarks) == ["a/b.jpg", "with space/c.png"]
    np.testing.assert_array_equal(landmarks["a/b.jpg"], np.arange(1, 11, dtype=np.float32).reshape(5, 2))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a.jpg\t1 2 3 4 5 6 7 8 9", r"line 2: expected an image path and 10 numbers .* 10 column"),
        ("a.jpg 1 2 3 4 5 6 7 8 9 10 11", r"line 2: expected .* found 12 column"),
        ("a.jpg 1 2 3 4 5 6 7 8 9 ten", r"line 2: expected .* not a number"),
        ("a.jpg 1 2 3 4 5 6 7 8 9 nan", r"line 2: expected .* non-finite"),
        ("b.jpg 1 2 3 4 5 6 7 8 9 10", r"line 2: image 'b.jpg' already has landmarks on line 1"),
    ],
)
def test_bad_landmark_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"b.jpg 1 2 3 4 5 6 7 8 9 10\n{line}\n")
    with pytest.raises(ValueError, match=message) as info:
        align.read_landmarks(path)
    assert str(path) in str(info.value) and "Received: line=" in str(info.value)


def test_missing_landmark_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Landmark file not found"):
        align.read_landmarks(tmp_path / "nope.txt")


def test_missing_image_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Image file not found: .*missing\.jpg"):
        align.load_image_rgb(tmp_path / "missing.jpg")


def test_corrupt_and_truncated_jpeg(tmp_path, lfw_dir):
    data = (lfw_dir / "images" / ECKHART).read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated or corrupt JPEG.*truncated\.jpg"):
        align.load_image_rgb(truncated)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(data[:2] + bytes(range(256)) * 8 + data[-2:])  # JPEG markers, nonsense inside
    with pytest.raises(ValueError, match=r"Cannot decode image .*garbage\.jpg"):
        align.load_image_rgb(garbage)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="not a JPEG or PNG file"):
        align.load_image_rgb(text)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a JPEG or PNG file"):
        align.load_image_rgb(empty)


def test_png_round_trip_and_grey_images(lfw_dir, tmp_path):
    image = align.load_image_rgb(lfw_dir / "images" / ECKHART)
    np.testing.assert_array_equal(decode_image_rgb(encode_image(image, "png")), image)
    grey = image.mean(axis=-1).astype(np.uint8)
    path = tmp_path / "grey.png"
    import cv2

    cv2.imwrite(str(path), grey)
    loaded = align.load_image_rgb(path)
    assert loaded.shape == (*grey.shape, 3)
    np.testing.assert_array_equal(loaded[..., 1], grey)
    with pytest.raises(ValueError, match="Unknown image format"):
        encode_image(image, "gif")
