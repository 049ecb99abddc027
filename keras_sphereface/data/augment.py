"""Per-image training augmentation of aligned face crops, on `uint8` pixels, stateless and seeded.

`augment_image` applies, in this order and each only when asked for:

1. a random horizontal flip (the SphereFace paper's only augmentation);
2. a random crop (`random_crop`): a box of the crop's aspect ratio, each side `1 - random_crop * u`
   of the image's (`u` uniform in [0, 1)), at a uniform position inside the image, resized back to
   the full size (bilinear): a zoom of up to `1 / (1 - random_crop)` with a shift;
3. colour jitter: a contrast factor in `[1 - contrast, 1 + contrast]` around the image's mean,
   then a brightness offset in `[-brightness, brightness]` grey levels;
4. random erasing (`random_erase`, Zhong et al. 2020): with this probability one rectangle of 2% to
   25% of the image, aspect ratio (height / width) between 0.3 and 3.3, is filled with mid-grey
   (128, which the zoo's `(x - 127.5) / 128` maps to about 0).

Every draw comes from `tf.random.stateless_uniform` with the seed given, so a pipeline with a seed
is reproducible and differs between epochs (the input pipeline passes a new seed per element).
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

#: The area of an erased rectangle, as a fraction of the image's (`random_erase`).
ERASE_AREA = (0.02, 0.25)
#: The aspect ratio (height / width) of an erased rectangle, drawn log-uniformly in this range.
ERASE_ASPECT = (0.3, 3.3)
#: The grey level of an erased rectangle (the zoo's normalization maps it to about 0).
ERASE_FILL = 128


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What `augment_image` does to each training crop.

    Attributes:
        flip: bool. Random horizontal flip with probability 0.5.
        random_crop: float in [0, 1). Largest fraction of each side a random crop removes (0: off).
        brightness: float >= 0. Largest brightness offset, in grey levels of 0-255 (0: off).
        contrast: float in [0, 1). Largest relative contrast change (0: off).
        random_erase: float in [0, 1]. Probability of erasing one random rectangle (0: off).
    """

    flip: bool = True
    random_crop: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    random_erase: float = 0.0

    def __post_init__(self):
        _check_fraction("random_crop", self.random_crop, upper=1.0, upper_open=True)
        _check_fraction("contrast", self.contrast, upper=1.0, upper_open=True)
        _check_fraction("random_erase", self.random_erase, upper=1.0, upper_open=False)
        if not _is_number(self.brightness) or self.brightness < 0:
            raise ValueError(f"`brightness` must be a number >= 0 (grey levels; 0: off). "
                             f"Received: brightness={self.brightness!r}")

    @property
    def changes_pixels(self) -> bool:
        """Whether anything beyond the flip is on (the crop is then worked on in float32)."""
        return bool(self.random_crop or self.brightness or self.contrast or self.random_erase)

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return bool(self.flip) or self.changes_pixels

    def describe(self) -> str:
        """What is on, in the field names: `"flip, random_crop 0.1, random_erase 0.5"`, or `"none"`."""
        parts = ["flip"] if self.flip else []
        parts += [f"{field.name} {getattr(self, field.name):g}" for field in dataclasses.fields(self)
                  if field.name != "flip" and getattr(self, field.name)]
        return ", ".join(parts) or "none"


def augment_image(image: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    """One augmented crop.

    Args:
        image: `uint8` tensor `(height, width, 3)` of static shape.
        seed: `int32`/`int64` tensor `(2,)`. The stateless seed of this image's draws.
        augmentation: Augmentation. What to apply.

    Returns:
        `uint8` tensor `(height, width, 3)`.
    """
    draws = tf.random.stateless_uniform((11,), seed=seed)
    if augmentation.flip:
        image = tf.cond(draws[0] < 0.5, lambda: tf.reverse(image, axis=[1]), lambda: image)
    if not augmentation.changes_pixels:
        return image
    pixels = tf.cast(image, tf.float32)
    if augmentation.random_crop:
        pixels = _random_crop(pixels, augmentation.random_crop, draws[1:4])
    if augmentation.contrast:
        mean = tf.reduce_mean(pixels)
        pixels = (pixels - mean) * (1.0 + augmentation.contrast * (2.0 * draws[4] - 1.0)) + mean
    if augmentation.brightness:
        pixels = pixels + augmentation.brightness * (2.0 * draws[5] - 1.0)
    if augmentation.random_erase:
        pixels = tf.cond(draws[6] < augmentation.random_erase, lambda: _erase(pixels, draws[7:11]),
                         lambda: pixels)
    return tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 255.0)), tf.uint8)


def _random_crop(pixels: tf.Tensor, largest_cut: float, draws: tf.Tensor) -> tf.Tensor:
    """A box of sides `1 - largest_cut * draws[0]` (fractions of the image) at a random place, resized back."""
    height, width = pixels.shape[0], pixels.shape[1]
    side = 1.0 - largest_cut * draws[0]
    top, left = (1.0 - side) * draws[1], (1.0 - side) * draws[2]
    box = tf.stack([top, left, top + side, left + side])[None]
    return tf.image.crop_and_resize(pixels[None], box, [0], (height, width), method="bilinear")[0]


def _erase(pixels: tf.Tensor, draws: tf.Tensor) -> tf.Tensor:
    """`pixels` with one rectangle (area and aspect from `draws[:2]`, its corner from `draws[2:4]`) set to grey."""
    height, width = pixels.shape[0], pixels.shape[1]
    low, high = ERASE_AREA
    area = (low + (high - low) * draws[0]) * float(height * width)
    log_low, log_high = math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])
    aspect = tf.exp(log_low + (log_high - log_low) * draws[1])
    rect_h = tf.clip_by_value(tf.round(tf.sqrt(area * aspect)), 1.0, float(height))
    rect_w = tf.clip_by_value(tf.round(tf.sqrt(area / aspect)), 1.0, float(width))
    top = tf.floor(draws[2] * (float(height) - rect_h + 1.0))
    left = tf.floor(draws[3] * (float(width) - rect_w + 1.0))
    rows = tf.range(height, dtype=tf.float32)[:, None]
    cols = tf.range(width, dtype=tf.float32)[None, :]
    inside = (rows >= top) & (rows < top + rect_h) & (cols >= left) & (cols < left + rect_w)
    return tf.where(inside[:, :, None], float(ERASE_FILL), pixels)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_fraction(name: str, value, upper: float, upper_open: bool) -> None:
    fits = _is_number(value) and value >= 0 and (value < upper if upper_open else value <= upper)
    if not fits:
        interval = f"[0, {upper:g})" if upper_open else f"[0, {upper:g}]"
        raise ValueError(f"`{name}` must be a number in {interval} (0: off). Received: {name}={value!r}")
