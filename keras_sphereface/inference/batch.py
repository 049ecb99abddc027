"""`embed_images`: images (and their mirrors) -> embeddings, in batches, through the cache."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_sphereface.data.face_source import FaceSource
from keras_sphereface.inference.cache import EmbeddingCache
from keras_sphereface.inference.embedder import Embedder


@dataclasses.dataclass
class EmbeddingStats:
    """How an embedding run went: images, forward passes and cache hits."""

    images: int = 0
    computed: int = 0
    cached: int = 0


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

    Returns:
        `(embeddings, flipped, stats)`: float32 `(num_images, dim)`, the mirrors' embeddings
        (or None when `flip` is False) and an `EmbeddingStats`.
    """
    check_input_size(embedder, source)
    paths = list(paths)
    if not paths:
        raise ValueError("No images to embed. Received: paths=[]")
    variants = (False, True) if flip else (False,)
    results: dict[tuple[int, bool], np.ndarray] = {}
    stats = EmbeddingStats(images=len(paths))
    with ThreadPoolExecutor(max(1, workers)) as pool, _progress(progress) as bar:
        task = bar.add_task(f"Embedding {len(paths)} images", total=len(paths))
        for start in range(0, len(paths), batch_size):
            chunk = list(range(start, min(start + batch_size, len(paths))))
            read = list(pool.map(lambda i: source.read(paths[i]), chunk))
            keys = {
                (i, f): EmbeddingCache.entry_key(read[n][1], embedder.preprocess, f)
                for n, i in enumerate(chunk)
                for f in variants
            }
            todo = []
            for n, i in enumerate(chunk):
                hits = {f: cache.get(keys[i, f]) if cache is not None else None for f in variants}
                if all(v is not None for v in hits.values()):
                    results.update({(i, f): v for f, v in hits.items()})
                    stats.cached += 1
                else:
                    todo.append(n)
            if todo:
                jobs = [(paths[chunk[n]], read[n][0]) for n in todo]
                crops = np.stack(list(pool.map(lambda job: source.crop(*job), jobs)))
                for f in variants:
                    vectors = embedder(crops[:, :, ::-1] if f else crops)
                    for n, vector in zip(todo, vectors, strict=True):
                        results[chunk[n], f] = vector
                        if cache is not None:
                            cache.put(keys[chunk[n], f], vector)
                stats.computed += len(todo)
            bar.advance(task, len(chunk))
    if cache is not None:
        cache.save()
    embeddings = np.stack([results[i, False] for i in range(len(paths))])
    flipped = np.stack([results[i, True] for i in range(len(paths))]) if flip else None
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
