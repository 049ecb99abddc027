"""Alignment on real LFW landmarks, checked against independent computations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from keras_sphereface.data import align
from tests.data.helpers import pairs_image_names

PUBLISHED = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]]
)


@pytest.fixture(scope="module")
def lfw_landmarks(lfw_dir):
    return align.read_landmarks(lfw_dir / "landmarks.txt")


def _lstsq_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Independent solution: the linear system in (a, b, tx, ty) solved by numpy.linalg.lstsq."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src.astype(np.float64), dst.astype(np.float64), strict=True):
        rows.append([x, -y, 1.0, 0.0])
        rhs.append(u)
        rows.append([y, x, 0.0, 1.0])
        rhs.append(v)
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def test_templates_are_the_published_points():
    assert align.SPHEREFACE_TEMPLATE.dtype == np.float32 and align.SPHEREFACE_TEMPLATE.shape == (5, 2)
    np.testing.assert_allclose(align.SPHEREFACE_TEMPLATE, PUBLISHED, atol=1e-5)
    np.testing.assert_allclose(align.ARCFACE_TEMPLATE, PUBLISHED + np.array([8.0, 0.0]), atol=1e-5)
    np.testing.assert_array_equal(align.get_template(), align.SPHEREFACE_TEMPLATE)
    np.testing.assert_array_equal(align.get_template("ArcFace", (112, 112)), align.ARCFACE_TEMPLATE)


def test_template_scaling_is_uniform_and_centred():
    # 112x112 with the SphereFace template is the ArcFace layout (centred, same scale).
    np.testing.assert_allclose(align.get_template("sphereface", (112, 112)), align.ARCFACE_TEMPLATE)
    # Doubling the size doubles distances about pixel centres: x' + 0.5 = 2 (x + 0.5).
    big = align.get_template("sphereface", (224, 192)).astype(np.float64)
    np.testing.assert_allclose(big + 0.5, 2 * (PUBLISHED + 0.5), atol=1e-4)
    # A narrower crop shrinks the face without distortion: the eye-to-mouth ratio is kept.
    narrow = align.get_template("arcface", (112, 96)).astype(np.float64)
    ratio = np.linalg.norm(narrow[0] - narrow[1]) / np.linalg.norm(narrow[0] - narrow[3])
    expected = np.linalg.norm(PUBLISHED[0] - PUBLISHED[1]) / np.linalg.norm(PUBLISHED[0] - PUBLISHED[3])
    assert ratio == pytest.approx(expected, rel=1e-5)
    assert narrow[:, 0].min() > 0 and narrow[:, 0].max() < 95


def test_template_for_size_picks_the_native_template():
    assert align.template_for_size((112, 112)) == "arcface"
    assert align.template_for_size((112, 96)) == "sphereface"
    assert align.template_for_size((160, 128)) == "sphereface"  # no native match: scaled SphereFace


def test_unknown_template_and_bad_size():
    with pytest.raises(ValueError, match=r"Unknown alignment template.*Received: name='vggface'"):
        align.get_template("vggface")
    with pytest.raises(ValueError, match=r"size must be \(height, width\)"):
        align.get_template("sphereface", (0, 96))
    with pytest.raises(ValueError, match="Unknown alignment template"):
        align.align_face(np.zeros((250, 250, 3), np.uint8), PUBLISHED, template="vggface")


def test_similarity_matches_independent_lstsq_on_lfw(lfw_landmarks):
    names = sorted(lfw_landmarks)[::10]  # 1,324 real faces
    errors = []
    for name in names:
        points = lfw_landmarks[name]
        matrix = align.similarity_transform(points, align.SPHEREFACE_TEMPLATE)
        independent = _lstsq_similarity(points, align.SPHEREFACE_TEMPLATE)
        np.testing.assert_allclose(matrix, independent, atol=1e-6)
        assert np.linalg.det(matrix[:, :2]) > 0  # a rotation and scale, never a reflection
        assert matrix[0, 0] == pytest.approx(matrix[1, 1])
        assert matrix[0, 1] == pytest.approx(-matrix[1, 0])
        mapped = align.transform_points(matrix, points)
        errors.append(np.linalg.norm(mapped - align.SPHEREFACE_TEMPLATE, axis=1).mean())
    errors = np.array(errors)
    # Real faces are not exactly similar to the template, but close: a few pixels at 112x96.
    assert np.median(errors) < 3.5
    assert np.percentile(errors, 99) < 8.0


def test_similarity_recovers_a_known_transform_exactly():
    angle, scale, shift = 0.3, 1.7, np.array([12.5, -4.25])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = PUBLISHED
    dst = src @ rotation.T + shift
    matrix = align.similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-12)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-12)


def test_similarity_rejects_degenerate_points():
    with pytest.raises(ValueError, match="coincide"):
        align.similarity_transform(np.ones((5, 2)), PUBLISHED)
    with pytest.raises(ValueError, match="same shape"):
        align.similarity_transform(PUBLISHED[:4], PUBLISHED)


def _bilinear_reference(image: np.ndarray, matrix: np.ndarray, size) -> np.ndarray:
    """Independent warp: invert the matrix, sample each output pixel centre bilinearly."""
    height, width = size
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    padded = np.pad(image.astype(np.float64), ((1, 2), (1, 2), (0, 0)))

    def at(yy, xx):
        return padded[np.clip(yy + 1, 0, padded.shape[0] - 1), np.clip(xx + 1, 0, padded.shape[1] - 1)]

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def test_warp_matches_independent_bilinear_sampling(lfw_dir, lfw_landmarks):
    name = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
    image = align.load_image_rgb(lfw_dir / "images" / name)
    crop = align.align_face(image, lfw_landmarks[name])
    assert crop.shape == (112, 96, 3) and crop.dtype == np.uint8
    matrix = align.similarity_transform(lfw_landmarks[name], align.SPHEREFACE_TEMPLATE)
    reference = _bilinear_reference(image, matrix, (112, 96))
    # OpenCV uses 5-bit fixed-point interpolation weights: allow a couple of grey levels.
    assert np.abs(crop.astype(np.float64) - reference).max() <= 3.0
    assert np.abs(crop.astype(np.float64) - reference).mean() < 0.6


def test_align_reproduces_the_mobilefacenet_reference_crops(lfw_dir, lfw_landmarks, shared_weights_dir):
    reference = np.load(shared_weights_dir / "mobilefacenet-casia" / "reference_io.npz")
    for expected, name in zip(reference["images_rgb_uint8"], reference["names"], strict=True):
        image = align.load_image_rgb(lfw_dir / "images" / str(name))
        crop = align.align_face(image, lfw_landmarks[str(name)])
        difference = np.abs(crop.astype(int) - expected.astype(int))
        # The reference used float64 landmarks; float32 rounding flips at most a few pixels by 1.
        assert difference.max() <= 1, name
        assert (difference == 0).mean() > 0.999, name


def test_interpolation_and_size_options(lfw_dir, lfw_landmarks):
    name = "Aaron_Guiel/Aaron_Guiel_0001.jpg"
    image = align.load_image_rgb(lfw_dir / "images" / name)
    nearest = align.align_face(image, lfw_landmarks[name], interpolation="nearest")
    bilinear = align.align_face(image, lfw_landmarks[name])
    assert not np.array_equal(nearest, bilinear)
    assert np.abs(nearest.astype(int) - bilinear.astype(int)).mean() < 8
    wide = align.align_face(image, lfw_landmarks[name], template="arcface", size=(112, 112))
    assert wide.shape == (112, 112, 3)
    # Same scale and rotation, shifted right by 8 pixels.
    np.testing.assert_array_equal(wide[:, 8:104], bilinear)
    with pytest.raises(ValueError, match="Unknown interpolation"):
        align.align_face(image, lfw_landmarks[name], interpolation="cubic-ish")


def test_align_face_rejects_bad_arguments():
    image = np.zeros((250, 250, 3), np.uint8)
    with pytest.raises(ValueError, match=r"uint8 array of shape \(height, width, 3\)"):
        align.align_face(image.astype(np.float32), PUBLISHED)
    with pytest.raises(ValueError, match=r"uint8 array of shape \(height, width, 3\)"):
        align.align_face(image[..., 0], PUBLISHED)
    with pytest.raises(ValueError, match=r"landmarks must have shape \(5, 2\)"):
        align.align_face(image, PUBLISHED[:4])
    with pytest.raises(ValueError, match="landmarks must be finite"):
        align.align_face(image, np.full((5, 2), np.nan))


def test_load_image_rgb_is_rgb(lfw_dir):
    path = lfw_dir / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"
    image = align.load_image_rgb(path)
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    np.testing.assert_array_equal(image, cv2.imread(str(path))[..., ::-1])


@pytest.mark.slow
def test_all_pairs_images_align(lfw_dir, lfw_landmarks):
    names = pairs_image_names(lfw_dir / "pairs.txt")
    assert len(names) > 7000
    crops = np.empty((len(names), 112, 96, 3), np.uint8)
    for index, name in enumerate(names):
        image = align.load_image_rgb(lfw_dir / "images" / name)
        crops[index] = align.align_face(image, lfw_landmarks[name])
    # Every crop is a real face: not blank, not mostly border, with the eyes darker than the cheeks.
    assert (crops.reshape(len(names), -1).std(axis=1) > 10).all()
    assert ((crops == 0).all(axis=-1).mean(axis=(1, 2)) < 0.2).all()
    mean = crops.astype(np.float64).mean(axis=(0, 3))
    assert mean[50:54, 28:33].mean() < mean[70:75, 25:30].mean()


def test_the_centre_of_an_arcface_crop_is_the_sphereface_crop(lfw_dir, lfw_landmarks):
    """A `.bin` set's 112x112 ArcFace crop, its columns 8..104 taken for a 112x96 model, is the SphereFace crop."""
    for name in sorted(lfw_landmarks)[:5]:
        image = align.load_image_rgb(lfw_dir / "images" / name)
        arcface = align.align_face(image, lfw_landmarks[name], "arcface", (112, 112))
        sphereface = align.align_face(image, lfw_landmarks[name], "sphereface", (112, 96))
        centre = align.arcface_crop_for(arcface, (112, 96))
        assert centre.shape == (112, 96, 3)
        difference = np.abs(centre.astype(int) - sphereface.astype(int))
        assert difference.max() <= 1, name  # the same warp up to bilinear rounding
    assert align.arcface_crop_for(arcface, (112, 112)) is arcface
    with pytest.raises(ValueError, match=r"serves models of input 112x112 .* or 112x96 .* size=\(96, 96\)"):
        align.arcface_crop_for(arcface, (96, 96))
    with pytest.raises(ValueError, match="Expected a 112x112 ArcFace-aligned crop"):
        align.arcface_crop_for(sphereface, (112, 96))
