"""Face alignment inside the TensorFlow graph, pixel for pixel as `align.py` does it with NumPy and OpenCV.

`decode_image_tf` decodes as OpenCV does; `similarity_transform_tf` is `align.similarity_transform`'s
closed form; `warp_to_template` is `align.align_face`'s warp. Used by the `tf.data` pipeline (records
of original photos aligned on the fly) and by the exported serving signatures.
"""

from __future__ import annotations

import tensorflow as tf


def decode_image_tf(data: tf.Tensor) -> tf.Tensor:
    """JPEG or PNG bytes -> `uint8` `(height, width, 3)` RGB, bit-identical to OpenCV's decoding.

    TensorFlow's default JPEG IDCT is libjpeg's fast integer one; OpenCV (and so `align`, the
    evaluation crops and the reference model) uses the accurate one, hence `INTEGER_ACCURATE`.
    """
    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(data, channels=3),
    )


def similarity_transform_tf(src: tf.Tensor, dst: tf.Tensor) -> tf.Tensor:
    """Least-squares similarity transform in TensorFlow (same closed form as `align.similarity_transform`).

    Args:
        src: `float32` tensor `(5, 2)`. Landmarks `(x, y)` in the source image.
        dst: `float32` tensor `(5, 2)`. Template points in the output image.

    Returns:
        `float32` tensor `(4,)`: `(a, b, tx, ty)` of `[[a, -b, tx], [b, a, ty]]`.
    """
    src_mean = tf.reduce_mean(src, axis=0)
    dst_mean = tf.reduce_mean(dst, axis=0)
    p, q = src - src_mean, dst - dst_mean
    norm = tf.reduce_sum(p * p)
    a = tf.reduce_sum(p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]) / norm
    b = tf.reduce_sum(p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]) / norm
    tx = dst_mean[0] - (a * src_mean[0] - b * src_mean[1])
    ty = dst_mean[1] - (b * src_mean[0] + a * src_mean[1])
    return tf.stack([a, b, tx, ty])


def warp_to_template(
    image: tf.Tensor, landmarks: tf.Tensor, template: tf.Tensor, size: tuple[int, int],
    interpolation: str = "bilinear",
) -> tf.Tensor:
    """Aligns one image in TensorFlow, with the same pixel conventions as `align.align_face`.

    Args:
        image: `uint8` tensor `(height, width, 3)`.
        landmarks: `float32` tensor `(5, 2)` in pixels of `image` (pixel centres at integers).
        template: `float32` tensor `(5, 2)` in output pixels.
        size: tuple `(height, width)` of the output.
        interpolation: str. `"bilinear"` or `"nearest"`.

    Returns:
        `uint8` tensor `(size[0], size[1], 3)`; black outside the source image.
    """
    a, b, tx, ty = tf.unstack(similarity_transform_tf(landmarks, template))
    # ImageProjectiveTransform maps each output pixel to the input: use the inverse transform.
    det = a * a + b * b
    ia, ib = a / det, b / det
    itx = -(ia * tx + ib * ty)
    ity = -(-ib * tx + ia * ty)
    transform = tf.stack([ia, ib, itx, -ib, ia, ity, 0.0, 0.0])[None, :]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=transform,
        output_shape=tf.constant(size, tf.int32),
        fill_value=0.0,
        interpolation=interpolation.upper(),
        fill_mode="CONSTANT",
    )[0]
    return tf.cast(tf.clip_by_value(tf.round(warped), 0.0, 255.0), tf.uint8)
