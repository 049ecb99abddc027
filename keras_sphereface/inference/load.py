"""`load_embedder`: any face-embedding model a user names -> an `Embedder`.

A zoo name (`"mobilefacenet"`, via `keras_sphereface.models.zoo`), a `.keras` / `.h5` model file, a
SavedModel directory (an export of `ksf export`, or any SavedModel with one image input), or a
`keras.Model` already in memory. `open_face_model` is the stricter loader of `ksf embed` / `ksf verify`:
a folder must be a SavedModel export of `ksf export`, with its contract.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from keras_sphereface.inference.contract import (
    ContractError,
    contract_path,
    is_export_dir,
    read_contract,
    resolve_export_dir,
)
from keras_sphereface.inference.embedder import Embedder
from keras_sphereface.inference.keras_loader import keras_embedder
from keras_sphereface.models.zoo import MODEL_NAMES, ZOO

if TYPE_CHECKING:
    from keras_sphereface.utils.types import ModelLike


def directory_fingerprint(path: str | os.PathLike) -> str:
    """Hex SHA-256 of every file's relative path and bytes under `path` (a SavedModel's identity)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root).as_posix()).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _savedmodel(path: Path, preprocess: str | None) -> Embedder:
    """A SavedModel directory; an export of `ksf export` (`DIR/<name>[/<version>]`) follows its contract."""
    from keras_sphereface.inference.savedmodel import savedmodel_embedder

    try:
        directory = resolve_export_dir(path)
    except ContractError:
        directory = path
    if not contract_path(directory).is_file():  # a SavedModel of other origin: the caller says how to scale
        return savedmodel_embedder(directory, preprocess or "ksf", directory_fingerprint(directory))
    contract = read_contract(directory)
    if contract.format != "savedmodel" or not (directory / "saved_model.pb").is_file():
        raise ContractError(f"{directory} is a {contract.format} export; only SavedModel exports are run here "
                            f"(ksf export --format savedmodel). Received: model={str(path)!r}")
    if preprocess not in (None, contract.embedder_preprocess):
        raise ContractError(f"The export {directory} normalizes inside its graph (contract: "
                            f"{contract.normalization!r}), so its inputs are pixels; preprocessing them again "
                            f"would be wrong. Received: preprocess={preprocess!r}")
    return savedmodel_embedder(directory, contract.embedder_preprocess, directory_fingerprint(directory),
                               name=contract.model_name, contract=contract)


def load_embedder(
    model: ModelLike, weights: str | os.PathLike | None = None, preprocess: str | None = None, batch_size: int = 64
) -> Embedder:
    """Loads an embedding model from the zoo, a `.keras` file, a SavedModel directory or a Keras model.

    Args:
        model: str, path-like or `keras.Model`. A zoo name (`"mobilefacenet"`, `"sphere20"`,
            case-insensitive), a `.keras` / `.h5` file, a SavedModel directory (an export of `ksf export`,
            `DIR/<name>` or `DIR/<name>/<version>`, is read with its preprocessing contract), or a model.
        weights: None, str or path-like. For zoo models: `None` (random), a named source (`"casia"`) or a
            weights file. Must be None for files and directories, which hold their weights.
        preprocess: str or None. A key of `keras_sphereface.models.preprocessing.PREPROCESSING`; None:
            the zoo model's own (`"ksf"`, `(x - 127.5) / 128`, for every model here), or the contract's
            (`"none"`: an export scales inside its graph); another value for an export is refused.
        batch_size: int. Images per forward pass.

    Returns:
        An `Embedder`.
    """
    if not isinstance(model, (str, os.PathLike)):
        return keras_embedder(model, preprocess or "ksf", batch_size)
    path = Path(model)
    if path.is_dir():
        if weights is not None:
            raise ValueError(f"A SavedModel directory holds its own weights. Received: weights={weights!r}")
        return _savedmodel(path, preprocess)
    if path.suffix in (".keras", ".h5") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"Model file not found. Received: model={str(model)!r}")
        if weights is not None:
            raise ValueError(f"A model file holds its own weights. Received: weights={weights!r}")
        import keras

        import keras_sphereface.layers  # noqa: F401  (registers the custom layers for deserialization)

        loaded = keras.saving.load_model(path, compile=False)
        return keras_embedder(loaded, preprocess or "ksf", batch_size)
    spec = ZOO.get(str(model).lower())
    if spec is None:
        raise ValueError(f"{str(model)!r} is neither a model file, a SavedModel directory nor a model of the zoo "
                         f"({', '.join(MODEL_NAMES)}). Received: model={str(model)!r}")
    return keras_embedder(spec.build(weights=weights), preprocess or spec.preprocessing, batch_size)


def open_face_model(
    model: ModelLike | Embedder, weights: str | os.PathLike | None = None, batch_size: int = 32
) -> Embedder:
    """`load_embedder` for `ksf embed` / `ksf verify`: a folder must be a SavedModel export with its contract.

    An export's contract then gives the crop size, the alignment template and the stored threshold
    (`Embedder.contract`); a plain SavedModel folder is refused, since how to scale and align its
    inputs is unknown (`ksf eval --model DIR --preprocess ...` runs one).

    Args:
        model: a zoo name, a `.keras` file, an export folder of `ksf export --format savedmodel`
            (`OUT/<name>/<version>`, or `OUT/<name>` for its highest version), a `keras.Model`, or an
            `Embedder` (returned as it is).
        weights: str, path-like or None. Zoo models only (`"casia"`, a file, or None for random).
        batch_size: int. Images per forward pass.

    Returns:
        An `Embedder`; `contract` is set for exports.

    Raises:
        ContractError: a folder that is no export, an export without (valid) contract, or not a SavedModel.
        ValueError, FileNotFoundError: unknown model, weights with a file or export, missing path.
    """
    if isinstance(model, Embedder):
        return model
    if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        if not is_export_dir(model):
            raise ContractError(f"{model} is a folder but not an export of `ksf export`. "
                                f"Received: model={str(model)!r}")
        read_contract(model)  # an export without its contract is refused, not run with guessed scaling
    return load_embedder(model, weights=weights, batch_size=batch_size)
