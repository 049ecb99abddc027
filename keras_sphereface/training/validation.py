"""Validation during training: the pair list and `.bin` sets are checked before step 1, then evaluated periodically."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from keras_sphereface import evaluation, inference
from keras_sphereface.data.bin_sets import BinSet, read_bin


class PairListError(ValueError):
    """The validation pair list cannot be used; the message lists the problems."""


class BinSetError(ValueError):
    """A validation `.bin` set cannot be used (missing, unsafe, malformed, or of a size the model cannot take)."""


def bin_figure(path: str | os.PathLike) -> str:
    """The name of a `.bin` set's figure in TensorBoard and `metrics.csv`: `val/<stem>` (`val/lfw` for `lfw.bin`)."""
    return f"val/{Path(path).stem}"


def check_bin_files(paths: list[str], input_size: tuple[int, int]) -> list[BinSet]:
    """Reads every validation `.bin` set before training starts (`keras_sphereface.data.bin_sets.read_bin`).

    Args:
        paths: list of str. The `.bin` files.
        input_size: tuple of 2 ints. The model's input `(height, width)`; the sets' crops must serve it.

    Returns:
        list of `BinSet`, in the order given.

    Raises:
        BinSetError: a missing, unsafe or malformed file, or crops the model's input size cannot take
            (the file named).
    """
    sets = []
    for path in paths:
        try:
            found = read_bin(path)
            evaluation.check_bin_model_size(found, input_size, "The model")
        except (OSError, ValueError) as error:
            raise BinSetError(f"Validation set {os.fspath(path)!r} is unusable (found before training): "
                              f"{error}") from error
        sets.append(found)
    return sets


def validate_bins(model: keras.Model, bin_sets: list[BinSet], preprocess: str = "ksf",
                  batch_size: int = 64) -> dict[str, float]:
    """Mean 10-fold accuracy (SphereFace protocol, contiguous folds) of an embedding model on each `.bin` set.

    Args:
        model: keras.Model. Embedding model, input 112x112, 112x96 or the sets' own crop size.
        bin_sets: list of `BinSet`, as `check_bin_files` returns them.
        preprocess: str. The model's pixel mapping.
        batch_size: int. Images per embedding batch.

    Returns:
        dict `val/<stem>` -> accuracy in [0, 1].
    """
    embedder = inference.load_embedder(model, preprocess=preprocess, batch_size=batch_size)
    options = evaluation.EmbeddingOptions(preprocess=preprocess, batch_size=batch_size, cache_dir=False,
                                          progress=False)
    return {bin_figure(found.path): float(evaluation.evaluate_bin_set(found, embedder, options)[0]["mean_accuracy"])
            for found in bin_sets}


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


def validation_figures(model: keras.Model, config, bin_sets: list[BinSet], preprocess: str = "ksf") -> dict[str, float]:
    """Every validation figure of a run: `val_accuracy` (`config.validate_pairs`) and `val/<stem>` per `.bin` set.

    Args:
        model: keras.Model. The embedding model.
        config: TrainConfig. Its `validate_pairs`, `validate_data`, `validate_skip_missing`.
        bin_sets: list of `BinSet` (`check_bin_files`).
        preprocess: str. The model's pixel mapping.
    """
    figures = {}
    if config.validate_pairs:
        figures["val_accuracy"] = validate(model, config.validate_pairs, config.validate_data, preprocess=preprocess,
                                           skip_missing=config.validate_skip_missing)
    figures.update(validate_bins(model, bin_sets, preprocess=preprocess))
    return figures


def headline(figures: dict[str, float]) -> float:
    """The one accuracy a run reports (`TrainResult.val_accuracy`, `on_validate`): the pair list's, else the
    first `.bin` set's."""
    return figures.get("val_accuracy", next(iter(figures.values())))
