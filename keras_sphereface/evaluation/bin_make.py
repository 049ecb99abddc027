"""`ksf make-bin`: a pair list of images and their landmarks -> an insightface `.bin` verification set.

The pair list is read by `pairs.py` (LFW `pairs.txt` or `path1 path2 same [fold]` lines), the images
found and aligned as `ksf eval` does (`sources.make_source`: `<data>/images`, `<data>/landmarks.txt`),
each pair's two crops encoded and written in pair order by `keras_sphereface.data.bin_sets.write_bin`.
"""

from __future__ import annotations

import os
from pathlib import Path

from keras_sphereface.data.align import template_size
from keras_sphereface.data.bin_sets import write_bin
from keras_sphereface.data.images import encode_image
from keras_sphereface.evaluation.pairs import read_pairs
from keras_sphereface.evaluation.sources import EmbeddingOptions, check_pairs_available, make_source

#: Encodings of the crops in a `.bin` file (insightface's own sets hold JPEGs).
IMAGE_FORMATS = ("jpeg", "png")


def make_bin(
    pairs_file: str | os.PathLike,
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    template: str = "arcface",
    landmarks: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
    skip_missing: bool = False,
    image_format: str = "jpeg",
    quality: int = 95,
    fmt: str = "auto",
) -> dict:
    """Builds a `.bin` verification set from a pair list, its images aligned with their landmarks.

    Args:
        pairs_file: str or path-like. The pair list (LFW `pairs.txt` format, or generic lines).
        data_dir: str or path-like. The data folder: images under `<data>/images` (or `<data>`), and
            `<data>/landmarks.txt` (5 points per image, as `ksf eval lfw` reads them).
        out: str or path-like. The `.bin` file, written atomically.
        template: str. `"arcface"` (112x112, insightface's alignment: what `.bin` readers expect) or
            `"sphereface"` (112x96 crops, for 112x96 models only).
        landmarks: str, path-like or None. The landmark file; None: `<data>/landmarks.txt`.
        images_dir: str, path-like or None. Overrides the image folder.
        skip_missing: bool. Leave out the pairs whose image or landmarks are missing (counted in the
            result), instead of failing on the first.
        image_format: str. `"jpeg"` or `"png"` (lossless).
        quality: int. JPEG quality, 1-100.
        fmt: str. Pair list format: `"auto"`, `"lfw"` or `"generic"`.

    Returns:
        dict: `out`, `pairs` and `images` written, `same` pairs, `template` and crop `size`, and
        `skipped_pairs` with `skipped` (line, images and reason of each pair left out).

    Raises:
        FileNotFoundError: a missing pair list, data folder or landmark file; a missing image or
            landmark line without `skip_missing` (names the pair list's line).
        ValueError: a bad pair list, template, image format or quality; an image that cannot be aligned.
        WriteError: `out` could not be written.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {list(IMAGE_FORMATS)}. Received: image_format={image_format!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100. Received: quality={quality!r}")
    size = template_size(template)
    options = EmbeddingOptions(align="landmarks", template=template, crop_size=size)
    source = make_source(data_dir, options, landmarks, images_dir)
    pairs, skipped = check_pairs_available(read_pairs(pairs_file, fmt=fmt), source, skip_missing)
    encoded: dict[str, bytes] = {}
    for path in pairs.image_paths():
        data, _ = source.read(path)
        encoded[path] = encode_image(source.crop(path, data), image_format, quality=int(quality))
    images = [encoded[p] for pair in zip(pairs.left, pairs.right, strict=True) for p in pair]
    write_bin(pairs.same, images, out)
    return {"out": os.fspath(Path(out)), "pairs": len(pairs), "images": len(images),
            "same": int(pairs.same.sum()), "template": template, "size": list(size),
            "skipped_pairs": len(skipped), "skipped": skipped}
