"""`embed_images`: images (and their mirrors) -> embeddings, in batches, through the cache.

The one path from a `FaceSource` to a model: evaluation, `ksf embed` / `ksf verify` (`embed_files`,
`verify_pair`) and the demo all embed through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_sphereface.data.face_source import FaceError, FaceSource
from keras_sphereface.inference.cache import EmbeddingCache
from keras_sphereface.inference.embedder import Embedder


@dataclasses.dataclass
class EmbeddingStats:
    """How an embedding run went: images, forward passes and cache hits.

    Attributes:
        images: int. Images asked for.
        computed: int. Images that went through the model.
        cached: int. Images served from the cache.
        failures: dict. Row index -> why that image has no embedding (`skip_unusable` only).
    """

    images: int = 0
    computed: int = 0
    cached: int = 0
    failures: dict[int, str] = dataclasses.field(default_factory=dict)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def embed_images(
    embedder: Embedder,
    paths: Sequence[str],
    source: FaceSource,
    flip: bool = True,
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    progress: bool = True,
    workers: int = 2,
    skip_unusable: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, EmbeddingStats]:
    """Embeds images (and their horizontal mirrors) in batches.

    Args:
        embedder: `Embedder`.
        paths: sequence of str. Image paths relative to `source.root`.
        source: `FaceSource`. How to read and crop the images; its crop size must equal the
            model's input size (checked before anything is read).
        flip: bool. Also embed the mirrored crops.
        batch_size: int. Images per forward pass.
        cache: `EmbeddingCache` or None.
        progress: bool. Show a rich progress bar.
        workers: int. Threads that read, decode and align images.
        skip_unusable: bool. An image the source cannot crop (`FaceError`: unreadable, no landmarks,
            no face, wrong size) gets a NaN row and its reason in `stats.failures` instead of stopping
            the run.

    Returns:
        `(embeddings, flipped, stats)`: float32 `(num_images, dim)` as the model returns them (not
        normalized), the mirrors' embeddings (or None when `flip` is False) and an `EmbeddingStats`.
        With no embedding at all, `dim` is the export contract's `embedding_dim` (0 without a contract).

    Raises:
        FaceError: an image cannot be cropped (without `skip_unusable`).
        ValueError: no paths, or crops of another size than the model's input.
    """
    check_input_size(embedder, source)
    paths = list(paths)
    if not paths:
        raise ValueError("No images to embed. Received: paths=[]")
    variants = (False, True) if flip else (False,)
    results: dict[tuple[int, bool], np.ndarray] = {}
    stats = EmbeddingStats(images=len(paths))

    def attempt(index: int, step, *args):
        """`step(*args)` for image `index`, or None with the reason noted when it is unusable and may be skipped."""
        try:
            return step(*args)
        except FaceError as error:
            if not skip_unusable:
                raise
            stats.failures[index] = str(error)
            return None

    def read(index: int) -> tuple[bytes, str] | None:
        return attempt(index, source.read, paths[index])

    def crop(index: int, data: bytes) -> np.ndarray | None:
        return attempt(index, source.crop, paths[index], data)

    with ThreadPoolExecutor(max(1, workers)) as pool, _progress(progress) as bar:
        task = bar.add_task(f"Embedding {len(paths)} images", total=len(paths))
        for start in range(0, len(paths), batch_size):
            chunk = range(start, min(start + batch_size, len(paths)))
            found = {i: item for i, item in zip(chunk, pool.map(read, chunk), strict=True) if item is not None}
            keys = {(i, f): EmbeddingCache.entry_key(found[i][1], embedder.preprocess, f)
                    for i in found for f in variants}
            todo = []
            for i in found:
                hits = {f: cache.get(keys[i, f]) if cache is not None else None for f in variants}
                if all(v is not None for v in hits.values()):
                    results.update({(i, f): v for f, v in hits.items()})
                    stats.cached += 1
                else:
                    todo.append(i)
            made = dict(zip(todo, pool.map(crop, todo, [found[i][0] for i in todo]), strict=True))
            todo = [i for i in todo if made[i] is not None]
            if todo:
                crops = np.stack([made[i] for i in todo])
                for f in variants:
                    vectors = embedder(crops[:, :, ::-1] if f else crops)
                    for i, vector in zip(todo, vectors, strict=True):
                        results[i, f] = vector
                        if cache is not None:
                            cache.put(keys[i, f], vector)
                stats.computed += len(todo)
            bar.advance(task, len(chunk))
    if cache is not None:
        cache.save()
    dim = next((len(v) for v in results.values()), embedder.contract.embedding_dim if embedder.contract else 0)
    empty = np.full(dim, np.nan, dtype=np.float32)
    embeddings = np.stack([results.get((i, False), empty) for i in range(len(paths))])
    flipped = np.stack([results.get((i, True), empty) for i in range(len(paths))]) if flip else None
    return embeddings, flipped, stats


def check_input_size(embedder: Embedder, source: FaceSource) -> None:
    """Raises a `ValueError` when the crops `source` makes do not have the model's input size."""
    if tuple(source.size) != tuple(embedder.input_size):
        raise ValueError(
            f"{embedder.name} takes {embedder.input_size[0]}x{embedder.input_size[1]} (height x width) "
            f"inputs, but the faces are cropped to {source.size[0]}x{source.size[1]} "
            f"({source.describe()}). Choose a matching template/crop size or model. "
            f"Received: model input size={tuple(embedder.input_size)}, crop size={tuple(source.size)}"
        )
