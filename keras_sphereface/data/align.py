"""5-point face alignment: templates, the least-squares similarity transform, the warp.

NumPy and OpenCV only (no TensorFlow), so evaluation scripts can align faces cheaply.

Conventions (see docs/data.md):
    - Images are RGB `uint8` arrays `(height, width, 3)`.
    - Points are `(x, y)` in pixels with OpenCV's convention: the centre of the top-left pixel
      is `(0, 0)`. Both the landmarks and the templates use it, and the transform is used by
      `cv2.warpAffine` exactly as estimated. This reproduces, bit for bit, the crops the
      shared MobileFaceNet reference was evaluated on.
    - Outside the source image the crop is black (constant border 0).
"""

from __future__ import annotations

import cv2
import numpy as np

from keras_sphereface.data.images import load_image_rgb
from keras_sphereface.data.landmarks import read_landmarks

__all__ = [
    "ARCFACE_SHIFT",
    "ARCFACE_TEMPLATE",
    "FITS",
    "INTERPOLATIONS",
    "SPHEREFACE_TEMPLATE",
    "TEMPLATES",
    "TEMPLATE_NAMES",
    "align_face",
    "alignment_transform",
    "arcface_crop_for",
    "get_template",
    "load_image_rgb",
    "read_landmarks",
    "similarity_transform",
    "template_for_size",
    "template_size",
    "transform_points",
]

#: SphereFace's 5 points `(x, y)` for a 96 (width) x 112 (height) crop: left eye, right eye,
#: nose tip, left mouth corner, right mouth corner.
_SPHEREFACE_POINTS = np.array(
    [
        [30.2946, 51.6963],
        [65.5318, 51.5014],
        [48.0252, 71.7366],
        [33.5493, 92.3655],
        [62.7299, 92.2041],
    ],
    dtype=np.float64,
)
#: Pixels the ArcFace template lies right of SphereFace's: its 112x112 crop is the 112x96 one widened by
#: this many columns on each side, so columns `ARCFACE_SHIFT .. ARCFACE_SHIFT + 96` are the SphereFace crop.
ARCFACE_SHIFT = 8
_ARCFACE_POINTS = _SPHEREFACE_POINTS + np.array([float(ARCFACE_SHIFT), 0.0])
SPHEREFACE_TEMPLATE = _SPHEREFACE_POINTS.astype(np.float32)
#: The same points shifted right by `ARCFACE_SHIFT` (8) pixels for a 112 x 112 crop (insightface / ArcFace).
ARCFACE_TEMPLATE = _ARCFACE_POINTS.astype(np.float32)

#: name -> (points in float64, native size `(height, width)`). The transform is computed from
#: the float64 points, so crops do not depend on float32 rounding of the published numbers.
TEMPLATES: dict[str, tuple[np.ndarray, tuple[int, int]]] = {
    "sphereface": (_SPHEREFACE_POINTS, (112, 96)),
    "arcface": (_ARCFACE_POINTS, (112, 112)),
}

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


#: Template names, e.g. for a CLI choice list.
TEMPLATE_NAMES = tuple(TEMPLATES)


def template_size(name: str) -> tuple[int, int]:
    """The native crop `(height, width)` of a template: 112x96 for `"sphereface"`, 112x112 for `"arcface"`."""
    key = name.lower() if isinstance(name, str) else name
    if key not in TEMPLATES:
        raise ValueError(f"Unknown alignment template; expected one of {sorted(TEMPLATES)}. Received: name={name!r}")
    return tuple(TEMPLATES[key][1])


def template_for_size(input_size: tuple[int, int]) -> str:
    """The template whose native crop is `input_size` (`(height, width)`), else `"sphereface"`.

    112x112 gives `"arcface"`, 112x96 and any other size `"sphereface"` (scaled to the size).
    """
    return next((name for name, (_, size) in TEMPLATES.items() if tuple(size) == tuple(input_size)), "sphereface")


def arcface_crop_for(crop: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 112x112 ArcFace-aligned crop (insightface's `.bin` and RecordIO sets) as a model of input `size` takes it.

    `(112, 112)`: the crop as it is. `(112, 96)`: its centre columns `ARCFACE_SHIFT .. ARCFACE_SHIFT + 96`,
    exactly the SphereFace-aligned crop (the two templates differ by that shift alone). No other size is
    served: resizing would change the face's scale against the template the model was trained on.

    Args:
        crop: array of shape `(112, 112, channels)`. The ArcFace-aligned crop.
        size: tuple of 2 ints. The model's input `(height, width)`.

    Returns:
        Array of shape `(size[0], size[1], channels)` (a view of `crop`).

    Raises:
        ValueError: `crop` is not 112x112, or `size` is neither 112x112 nor 112x96.
    """
    (height, width), native = tuple(int(v) for v in size), TEMPLATES["arcface"][1]
    if tuple(crop.shape[:2]) != native:
        raise ValueError(f"Expected a {native[0]}x{native[1]} ArcFace-aligned crop. Received: crop shape={crop.shape}")
    if (height, width) == native:
        return crop
    if (height, width) == TEMPLATES["sphereface"][1]:
        return crop[:, ARCFACE_SHIFT:ARCFACE_SHIFT + width]
    raise ValueError(f"A 112x112 ArcFace-aligned crop serves models of input 112x112 (as it is) or 112x96 (its "
                     f"centre columns, the SphereFace crop); resizing would change the face's scale. "
                     f"Received: size={(height, width)}")


#: Directions of the least-squares fit (see `alignment_transform`).
FITS = ("image_to_template", "template_to_image")


def _check_size(size) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        height = width = 0
    if height <= 0 or width <= 0:
        raise ValueError(
            f"size must be (height, width), two positive integers. Received: size={size!r}"
        )
    return height, width


def _template_points(name: str, size: tuple[int, int]) -> np.ndarray:
    key = name.lower() if isinstance(name, str) else name
    if key not in TEMPLATES:
        raise ValueError(
            f"Unknown alignment template; expected one of {sorted(TEMPLATES)}. Received: name={name!r}"
        )
    points, (native_h, native_w) = TEMPLATES[key]
    height, width = _check_size(size)
    if (height, width) == (native_h, native_w):
        return points.copy()
    scale = min(height / native_h, width / native_w)
    offset = np.array([(width - scale * native_w) / 2.0, (height - scale * native_h) / 2.0])
    return (points + 0.5) * scale - 0.5 + offset


def get_template(name: str = "sphereface", size: tuple[int, int] = (112, 96)) -> np.ndarray:
    """The 5 template points of a named template, for a crop of the given size.

    At its native size (`(112, 96)` for `"sphereface"`, `(112, 112)` for `"arcface"`) the
    template is returned unchanged. For another size the points are scaled uniformly (no
    distortion) by the largest factor that keeps the native canvas inside the requested one,
    and centred; scaling treats coordinates as pixel centres, so `(224, 192)` is exactly a 2x
    upsampling of the 112 x 96 crop, and `get_template("sphereface", (112, 112))` equals
    `ARCFACE_TEMPLATE`.

    Args:
        name: str. `"sphereface"` or `"arcface"` (case-insensitive).
        size: tuple of 2 ints. The crop size `(height, width)` in pixels.

    Returns:
        `float32` array of shape `(5, 2)`, `(x, y)` per point.

    Raises:
        ValueError: unknown template name or invalid size.
    """
    return _template_points(name, size).astype(np.float32)


def _check_points(points, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must have shape (num_points, 2) with num_points >= 2. "
                         f"Received: {name} with shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite. Received: {name}={array.tolist()}")
    return array


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) from src to dst.

    Minimises `sum_i ||A @ src_i + t - dst_i||^2` over `A = [[a, -b], [b, a]]` and `t`: a
    rotation times a positive scale, never a reflection or shear. In closed form, with
    centred points `p_i = src_i - mean(src)` and `q_i = dst_i - mean(dst)`:
    `a = sum(p . q) / sum|p|^2`, `b = sum(p x q) / sum|p|^2`, `t = mean(dst) - A @ mean(src)`.

    Args:
        src: array of shape `(num_points, 2)`. Points `(x, y)` in the source image.
        dst: array of shape `(num_points, 2)`. Where they should land (e.g. a template).

    Returns:
        `float64` array of shape `(2, 3)`, `[A | t]`, usable with `cv2.warpAffine`.

    Raises:
        ValueError: shapes differ, values are not finite, or all source points coincide.
    """
    src = _check_points(src, "src")
    dst = _check_points(dst, "dst")
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have the same shape. Received: src.shape={src.shape}, "
                         f"dst.shape={dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    p, q = src - src_mean, dst - dst_mean
    norm = float(np.sum(p * p))
    if norm < 1e-12:
        raise ValueError(f"All source points coincide; no similarity transform exists. "
                         f"Received: src={src.tolist()}")
    a = float(np.sum(p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1])) / norm
    b = float(np.sum(p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0])) / norm
    linear = np.array([[a, -b], [b, a]])
    translation = dst_mean - linear @ src_mean
    return np.concatenate([linear, translation[:, None]], axis=1)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies a `(2, 3)` affine matrix to points `(num_points, 2)`; returns `float64` points."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def _invert_affine(matrix: np.ndarray) -> np.ndarray:
    linear_inverse = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear_inverse, (-linear_inverse @ matrix[:, 2])[:, None]], axis=1)


def alignment_transform(landmarks: np.ndarray, template: np.ndarray, fit: str = "image_to_template") -> np.ndarray:
    """The similarity that maps image landmarks onto template points, fitted in either direction.

    With 5 real landmarks no similarity is exact, and the least-squares solution depends on
    which side the residuals are measured:

    - `"image_to_template"` (default; what the shared MobileFaceNet reference crops use):
      `similarity_transform(landmarks, template)`, residuals in crop pixels.
    - `"template_to_image"`: fits `template -> landmarks` (residuals in image pixels) and
      inverts it, as MATLAB's `cp2tform(landmarks, template, 'similarity')` does for a
      non-reflective similarity (SphereFace's own preprocessing).

    Both give the same matrix when the points are an exact similarity copy of each other.

    Args:
        landmarks: array of shape `(num_points, 2)`. Points `(x, y)` in the image.
        template: array of shape `(num_points, 2)`. The same points in the crop.
        fit: str. `"image_to_template"` or `"template_to_image"`.

    Returns:
        `float64` array of shape `(2, 3)` mapping image to crop coordinates (for `cv2.warpAffine`).

    Raises:
        ValueError: unknown `fit`, or bad points (see `similarity_transform`).
    """
    if fit == "image_to_template":
        return similarity_transform(landmarks, template)
    if fit == "template_to_image":
        return _invert_affine(similarity_transform(template, landmarks))
    raise ValueError(f"Unknown fit; expected one of {list(FITS)}. Received: fit={fit!r}")


def _resolve_template(template, size: tuple[int, int]) -> np.ndarray:
    if isinstance(template, str):
        return _template_points(template, size)
    points = _check_points(template, "template")
    if points.shape != (5, 2):
        raise ValueError(
            f"A template array must have shape (5, 2). Received: template with shape {points.shape}"
        )
    return points


def _resolve_interpolation(interpolation) -> int:
    if isinstance(interpolation, str):
        if interpolation.lower() not in INTERPOLATIONS:
            raise ValueError(f"Unknown interpolation; expected one of {sorted(INTERPOLATIONS)}. "
                             f"Received: interpolation={interpolation!r}")
        return INTERPOLATIONS[interpolation.lower()]
    if interpolation in INTERPOLATIONS.values():
        return int(interpolation)
    raise ValueError(f"Unknown interpolation; expected one of {sorted(INTERPOLATIONS)} or an OpenCV "
                     f"INTER_* flag. Received: interpolation={interpolation!r}")


def align_face(
    image_rgb: np.ndarray,
    landmarks: np.ndarray,
    template: str | np.ndarray = "sphereface",
    size: tuple[int, int] = (112, 96),
    interpolation: str | int = "bilinear",
    fit: str = "image_to_template",
) -> np.ndarray:
    """Aligns a face to a template with a 5-point similarity transform and `cv2.warpAffine`.

    Args:
        image_rgb: `uint8` array of shape `(height, width, 3)`, RGB.
        landmarks: array of shape `(5, 2)`: `(x, y)` of left eye, right eye, nose tip, left and
            right mouth corners, in pixels of `image_rgb` (pixel centres at integers).
        template: str or array. A template name for `get_template` (`"sphereface"`,
            `"arcface"`), or explicit `(5, 2)` points in output pixels.
        size: tuple of 2 ints. Output `(height, width)`; default `(112, 96)`.
        interpolation: str or int. `"bilinear"` (default), `"nearest"`, `"bicubic"`, `"area"`,
            `"lanczos"`, or an OpenCV `INTER_*` flag.
        fit: str. Direction of the least-squares similarity fit: `"image_to_template"`
            (default) or `"template_to_image"` (MATLAB `cp2tform`); see `alignment_transform`.

    Returns:
        `uint8` array of shape `(size[0], size[1], 3)`, RGB.

    Raises:
        ValueError: bad image dtype/shape, landmarks, template name, size, interpolation or fit.
    """
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image_rgb must be a uint8 array of shape (height, width, 3). "
                         f"Received: image_rgb with dtype={image.dtype}, shape={image.shape}")
    height, width = _check_size(size)
    points = _check_points(landmarks, "landmarks")
    if points.shape != (5, 2):
        raise ValueError(
            f"landmarks must have shape (5, 2). Received: landmarks with shape {points.shape}"
        )
    matrix = alignment_transform(points, _resolve_template(template, (height, width)), fit)
    return cv2.warpAffine(
        image,
        matrix,
        (width, height),
        flags=_resolve_interpolation(interpolation),
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
