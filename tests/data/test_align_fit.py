"""The two directions of the least-squares similarity fit (`fit=` of `align_face`)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from keras_sphereface.data import align

TEMPLATE = align.get_template().astype(np.float64)


def _cp2tform_style(landmarks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Independent `template -> image` fit, written as MATLAB's non-reflective similarity system.

    Solves `[u v] = [x y 1] @ [[sc, -ss], [ss, sc], [tx, ty]]` for `(sc, ss, tx, ty)` with
    `numpy.linalg.lstsq`, `(x, y)` template and `(u, v)` image points; returns the 3x3 matrix
    mapping template to image (column-vector convention).
    """
    x, y = template[:, 0], template[:, 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    system = np.vstack([np.stack([x, y, ones, zeros], axis=1), np.stack([y, -x, zeros, ones], axis=1)])
    rhs = np.concatenate([landmarks[:, 0], landmarks[:, 1]])
    (sc, ss, tx, ty), *_ = np.linalg.lstsq(system, rhs, rcond=None)
    return np.array([[sc, ss, tx], [-ss, sc, ty], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def lfw_landmarks(lfw_dir):
    return align.read_landmarks(lfw_dir / "landmarks.txt")


def test_directions_agree_on_an_exact_similarity():
    angle, scale, shift = -0.2, 0.55, np.array([-30.0, 17.5])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    # Image points that are an exact similarity copy of the template.
    landmarks = (TEMPLATE - shift) @ np.linalg.inv(rotation).T
    forward = align.alignment_transform(landmarks, TEMPLATE, "image_to_template")
    backward = align.alignment_transform(landmarks, TEMPLATE, "template_to_image")
    np.testing.assert_allclose(forward, backward, atol=1e-10)
    np.testing.assert_allclose(forward[:, :2], rotation, atol=1e-10)
    np.testing.assert_allclose(align.transform_points(backward, landmarks), TEMPLATE, atol=1e-9)


def test_template_to_image_matches_independent_solution_on_lfw(lfw_landmarks):
    names = sorted(lfw_landmarks)[::50]  # 265 real faces
    gaps = []
    for name in names:
        points = np.asarray(lfw_landmarks[name], dtype=np.float64)
        matrix = align.alignment_transform(points, TEMPLATE, "template_to_image")
        independent = np.linalg.inv(_cp2tform_style(points, TEMPLATE))[:2]
        np.testing.assert_allclose(matrix, independent, atol=1e-8)
        assert matrix[0, 0] == pytest.approx(matrix[1, 1]) and matrix[0, 1] == pytest.approx(-matrix[1, 0])
        forward = align.alignment_transform(points, TEMPLATE)
        np.testing.assert_array_equal(forward, align.similarity_transform(points, TEMPLATE))
        # Where the template lands on the crop under each fit: real faces are not exact copies.
        corners = np.array([[0.0, 0.0], [95.0, 111.0], [95.0, 0.0], [0.0, 111.0]])
        inverse_f = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
        gaps.append(np.abs(align.transform_points(matrix, align.transform_points(inverse_f, corners)) - corners).max())
        # Cauchy-Schwarz: |forward scale| * |template->image scale| <= 1, so the inverted fit
        # always enlarges the face a little (equality only for an exact similarity).
        assert np.hypot(*matrix[:, 0]) > np.hypot(*forward[:, 0])
    gaps = np.array(gaps)
    assert np.median(gaps) > 0.5  # the directions really differ on real landmarks (about 1.3 px)
    assert np.max(gaps) < 20.0  # but both are reasonable crops of the same face


def test_align_face_fit_option_warps_with_the_chosen_matrix(lfw_dir, lfw_landmarks):
    name = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
    image = align.load_image_rgb(lfw_dir / "images" / name)
    points = np.asarray(lfw_landmarks[name], dtype=np.float64)
    crop = align.align_face(image, points, fit="template_to_image")
    # Independent path: warp with the template -> image map directly (OpenCV's inverse-map flag).
    reference = cv2.warpAffine(image, _cp2tform_style(points, TEMPLATE)[:2], (96, 112),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    assert np.abs(crop.astype(int) - reference.astype(int)).max() <= 1
    assert not np.array_equal(crop, align.align_face(image, points))
    np.testing.assert_array_equal(align.align_face(image, points, fit="image_to_template"),
                                  align.align_face(image, points))


def test_unknown_fit_is_rejected():
    with pytest.raises(ValueError, match=r"Unknown fit.*Received: fit='both'"):
        align.alignment_transform(TEMPLATE + 3.0, TEMPLATE, "both")
    with pytest.raises(ValueError, match=r"Unknown fit"):
        align.align_face(np.zeros((150, 150, 3), np.uint8), TEMPLATE + 20, fit="matlab")
