"""Validation during training: the pair list is checked before step 1, then evaluated periodically."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from keras_sphereface import evaluation


class PairListError(ValueError):
    """The validation pair list cannot be used; the message lists the problems."""


def check_pair_list(pairs_file: str | os.PathLike, data_dir: str | os.PathLike, skip_missing: bool = False,
                    max_listed: int = 10) -> tuple[int, list[str]]:
    """Checks a validation pair list before training starts.

    The list must parse (`keras_sphereface.evaluation.read_pairs`), every image it names must
    exist under `<data_dir>/images` (or `<data_dir>` when there is no `images` folder), and when
    `<data_dir>/landmarks.txt` exists (the images are aligned from it, as `ksf eval pairs`
    does), every image must have a landmark line.

    Args:
        pairs_file: str or path-like. The pair list.
        data_dir: str or path-like. The dataset folder (as `ksf eval pairs --data`).
        skip_missing: bool. Return the problems instead of raising (the pairs they touch are then
            left out of every validation, as `ksf eval pairs --skip-missing` does).
        max_listed: int. Problems named in the message.

    Returns:
        `(num_pairs, problems)`: the number of pairs in the list and one line per problem.

    Raises:
        PairListError: an unreadable list, or (without `skip_missing`) missing images or
            landmarks, all reported at once.
    """
    try:
        pairs = evaluation.read_pairs(pairs_file)
    except (OSError, ValueError) as error:
        raise PairListError(f"Validation pair list {os.fspath(pairs_file)!r} is unusable (found before "
                            f"training): {error}") from error
    if not Path(data_dir).is_dir():
        raise PairListError(f"Validation data folder not found (before training). Received: "
                            f"validate_data={os.fspath(data_dir)!r}")
    source = evaluation.make_source(data_dir)
    problems = [f"{path}: {why}" for path in pairs.image_paths() if (why := source.check_available(path))]
    if problems and not skip_missing:
        listed = "\n  ".join(problems[:max_listed])
        more = f"\n  ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise PairListError(f"Validation pair list {os.fspath(pairs_file)!r}: {len(problems)} problem(s), "
                            f"found before training:\n  {listed}{more}\n(skip the pairs they touch with "
                            f"validate_skip_missing / --validate-skip-missing)")
    return len(pairs), problems


def validate(model: keras.Model, pairs_file: str | os.PathLike, data_dir: str | os.PathLike,
             preprocess: str = "ksf", skip_missing: bool = False, batch_size: int = 64) -> float:
    """Mean 10-fold verification accuracy (SphereFace protocol) of an embedding model on a pair list.

    Args:
        model: keras.Model. Embedding model `(batch_size, height, width, 3) -> (batch_size, dim)`,
            preprocessed input as its family expects.
        pairs_file, data_dir: see `check_pair_list`.
        preprocess: str. The model's pixel mapping (`keras_sphereface.models.preprocessing` key).
        skip_missing: bool. Leave out pairs whose images or landmarks are missing.
        batch_size: int. Images per embedding batch.

    Returns:
        float in [0, 1], the mean accuracy over folds.
    """
    height, width = model.input_shape[1:3]
    embedding = evaluation.EmbeddingOptions(crop_size=(height, width), preprocess=preprocess, batch_size=batch_size,
                                            cache_dir=False, progress=False)
    report = evaluation.evaluate_pairs(pairs_file, model, data_dir, skip_missing=skip_missing, embedding=embedding,
                                       show=False)
    return float(report["mean_accuracy"])
