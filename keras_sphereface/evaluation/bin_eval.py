"""`.bin` verification sets (`ksf eval bin`): both protocols per file, the table, `report.json` and the ROC plot.

Each file is read safely (`keras_sphereface.data.bin_sets.read_bin`) before the model loads. Its
112x112 ArcFace-aligned crops reach the model through `BinSource`, as it takes them
(`keras_sphereface.data.align.arcface_crop_for`: as they are for a 112x112 input, the centre 96
columns, the SphereFace crop, for 112x96; other input sizes are refused). Every image and its
mirror are embedded once (`inference.embed_images`, through the embedding cache); then each file
is scored by insightface's protocol (`insightface_protocol.py`) and by ours (`protocol.py`, with
the same 10 contiguous folds, since a `.bin` file has no fold column).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_sphereface import inference
from keras_sphereface.data.align import TEMPLATES, arcface_crop_for
from keras_sphereface.data.bin_sets import BinSet, read_bin
from keras_sphereface.data.face_source import FaceError, FaceSource
from keras_sphereface.data.images import decode_image_rgb
from keras_sphereface.evaluation.insightface_protocol import contiguous_folds, verify_insightface
from keras_sphereface.evaluation.protocol import VerificationResult, verify_embeddings
from keras_sphereface.evaluation.report import print_verification_table, verification_report, write_json
from keras_sphereface.evaluation.roc import DEFAULT_FARS, RocSummary, roc_summary
from keras_sphereface.evaluation.sources import EmbeddingOptions, model_label
from keras_sphereface.utils.types import ModelLike
from keras_sphereface.version import __version__

#: Input sizes `(height, width)` a `.bin` set's 112x112 ArcFace crops serve (see `arcface_crop_for`).
BIN_INPUT_SIZES = (TEMPLATES["arcface"][1], TEMPLATES["sphereface"][1])


@dataclasses.dataclass
class BinSource(FaceSource):
    """The images of a `.bin` set, served to `embed_images` by index (`"0"`, `"1"`, ...), cropped for the model.

    Attributes:
        images: list of bytes. The set's encoded 112x112 ArcFace-aligned crops.
    """

    images: list = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        """The crop settings in the cache key: the ArcFace crop, and the columns the model takes."""
        return f"bin-arcface:{self.size[0]}x{self.size[1]}"

    def check_available(self, path: str) -> str | None:
        """None for an index of the set, else why not."""
        return None if path.isdigit() and int(path) < len(self.images) else f"no image {path} in {self.root}"

    def load_bytes(self, path: str) -> bytes:
        """The encoded image number `path`."""
        return self.images[int(path)]

    def crop(self, path: str, data: bytes) -> np.ndarray:
        """Decodes image `path` and returns it as the model takes it: as it is when it has the model's
        input size (a set made with the SphereFace template for a 112x96 model), else `arcface_crop_for`.

        Raises:
            FaceError: undecodable bytes, or a size neither the model's nor 112x112.
        """
        where = f"{self.root}, image {path}"
        try:
            image = decode_image_rgb(data, source=where)
            if tuple(image.shape[:2]) == tuple(self.size):
                return image
            return np.ascontiguousarray(arcface_crop_for(image, self.size))
        except ValueError as error:
            raise FaceError(f"{where}: {error}") from error


def check_bin_input_size(input_size: Sequence[int], name: str,
                         crop_size: Sequence[int] | None = None) -> tuple[int, int]:
    """The model input `(height, width)`, when a `.bin` set's crops of `crop_size` can serve it.

    Crops of the model's own input size serve it as they are; 112x112 ArcFace-aligned ones (the default
    `crop_size`, insightface's) serve 112x112 and 112x96 models.

    Raises:
        ValueError: any other input size (names the model and the sizes).
    """
    size = (int(input_size[0]), int(input_size[1]))
    if crop_size is not None and tuple(int(v) for v in crop_size) == size:
        return size
    if size not in BIN_INPUT_SIZES:
        raise ValueError(f"{name} takes {size[0]}x{size[1]} inputs; a .bin set's 112x112 ArcFace-aligned crops serve "
                         f"112x112 models (as they are) and 112x96 ones (the centre 96 columns, the SphereFace "
                         f"crop). Received: input size={size}")
    return size


def check_bin_model_size(bin_set: BinSet, input_size: Sequence[int], name: str) -> tuple[int, int]:
    """`check_bin_input_size` with the crop size of the set's first image (decoded to see it).

    Raises:
        ValueError: an undecodable first image, or crops that cannot serve `input_size`.
    """
    first = decode_image_rgb(bin_set.images[0], source=f"{bin_set.path}, image 0").shape[:2]
    return check_bin_input_size(input_size, name, first)


def embed_bin(embedder: inference.Embedder, bin_set: BinSet, embedding: EmbeddingOptions,
              cache=None) -> tuple[np.ndarray, np.ndarray, inference.EmbeddingStats]:
    """Embeddings of a set's images and of their mirrors, `(2 * num_pairs, dim)` each, and the run's stats."""
    size = check_bin_model_size(bin_set, embedder.input_size, embedder.name)
    source = BinSource(bin_set.path, size=size, crop_for=embedder.name, images=bin_set.images)
    return inference.embed_images(embedder, [str(i) for i in range(len(bin_set.images))], source, flip=True,
                                  batch_size=embedding.batch_size, cache=cache, progress=embedding.progress)


def score_bin(embeddings: np.ndarray, flipped: np.ndarray, bin_set: BinSet, num_folds: int = 10,
              fars: Sequence[float] = DEFAULT_FARS) -> tuple[dict, VerificationResult, RocSummary]:
    """Both protocols on a set's embeddings: the SphereFace report (`verification_report`) with `insightface` inside.

    Args:
        embeddings, flipped: `np.ndarray`, shape `(2 * num_pairs, dim)`. As `embed_bin` returns them.
        bin_set: BinSet. The set (its `same` flags).
        num_folds: int. Contiguous folds of both protocols.
        fars: sequence of float. The FARs the SphereFace report gives TAR at.

    Returns:
        `(report, result, summary)`: the SphereFace protocol's report dict, with the insightface protocol's
        figures under `"insightface"`; its `VerificationResult` and `RocSummary` (for the plots).
    """
    pairs = np.arange(bin_set.num_pairs)
    folds = contiguous_folds(bin_set.num_pairs, num_folds)
    result = verify_embeddings(embeddings, flipped, 2 * pairs, 2 * pairs + 1, bin_set.same, folds, "sphereface")
    summary = roc_summary(result.scores, result.same, fars)
    report = verification_report(result, summary, dataset=bin_set.name, bin_file=os.fspath(bin_set.path),
                                 fold_assignment=f"{num_folds} contiguous folds in file order (as insightface)")
    report["insightface"] = verify_insightface(embeddings, flipped, bin_set.same, num_folds).to_dict()
    return report, result, summary


def evaluate_bin_set(bin_set: BinSet, embedder: inference.Embedder, embedding: EmbeddingOptions, cache=None,
                     fars: Sequence[float] = DEFAULT_FARS) -> tuple[dict, VerificationResult, RocSummary,
                                                                    inference.EmbeddingStats]:
    """One `.bin` set through a loaded embedder: `embed_bin`, then `score_bin`.

    Returns:
        `(report, result, summary, stats)`: as `score_bin`, and the embedding run's `EmbeddingStats`.
    """
    embeddings, flipped, stats = embed_bin(embedder, bin_set, embedding, cache)
    return (*score_bin(embeddings, flipped, bin_set, fars=fars), stats)


def _write_outputs(report: dict, result, summary, out: Path) -> None:
    """`report.json`, `roc.png` and `scores_hist.png` of one set into `out`."""
    from keras_sphereface.evaluation.plots import plot_roc, plot_score_histograms

    out.mkdir(parents=True, exist_ok=True)
    title = f"{report['dataset']} (sphereface protocol)"
    plot_roc(summary, out / "roc.png", title=f"ROC: {title}")
    plot_score_histograms(result.scores, result.same, result.mean_threshold, out / "scores_hist.png",
                          title=f"Held-out cosine scores: {title}")
    write_json(report, out / "report.json")


def print_bin_summary(reports: dict[str, dict], console=None) -> None:
    """One rich table row per set: pairs, both protocols' accuracy ± std, insightface's VAL@FAR."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=".bin verification sets")
    for column in ("set", "pairs", "sphereface", "insightface", "VAL@FAR (insightface)"):
        table.add_column(column, justify="left" if column == "set" else "right")
    for name, report in reports.items():
        ins = report["insightface"]
        table.add_row(name, str(report["num_pairs"]),
                      f"{100 * report['mean_accuracy']:.2f}% ± {100 * report['std_accuracy']:.2f}",
                      f"{100 * ins['mean_accuracy']:.2f}% ± {100 * ins['std_accuracy']:.2f}",
                      f"{100 * ins['val']:.2f}% ± {100 * ins['val_std']:.2f} @ {ins['far_target']:g}")
    console.print(table)


def evaluate_bin_files(
    files: Sequence[str | os.PathLike],
    model: ModelLike,
    *,
    weights: str | os.PathLike | None = None,
    embedding: EmbeddingOptions | None = None,
    out_dir: str | os.PathLike | None = None,
    show: bool = True,
    fars: Sequence[float] = DEFAULT_FARS,
    command: str | None = None,
) -> dict[str, dict]:
    """Verification on insightface `.bin` sets, under insightface's protocol and the SphereFace one.

    Every file is read (and checked: safe pickle, two images per pair) before the model loads.

    Args:
        files: sequence of str or path-like. `.bin` files (`lfw.bin`, `cfp_fp.bin`, ...); names must differ
            by stem (the stem names each set's report folder).
        model: str, path-like or `keras.Model`. As `evaluate_pairs`; its input must be 112x112 or 112x96.
        weights: None or str. Weights of a zoo model (`"casia"`, a file, or None for random).
        embedding: EmbeddingOptions or None. Its `preprocess`, `batch_size`, `cache_dir`, `progress` apply
            (the crops are the file's; alignment options do not).
        out_dir: str, path-like or None. `<out_dir>/<stem>/report.json`, `roc.png`, `scores_hist.png`.
        show: bool. Print each set's fold table and the summary table.
        fars: sequence of float. FARs of the SphereFace report's TAR@FAR.
        command: str or None. The command line, recorded in the reports.

    Returns:
        dict stem -> report (the SphereFace protocol's report, insightface's figures under `"insightface"`).

    Raises:
        FileNotFoundError: a missing file.
        BinError: an unsafe or malformed `.bin` file (named).
        ValueError: two files with one stem, a model input size the crops cannot serve, or an export that
            fuses the mirror's embedding itself.
    """
    opts = embedding or EmbeddingOptions()
    sets = [read_bin(f) for f in files]
    stems = [s.name for s in sets]
    if len(set(stems)) != len(stems):
        raise ValueError(f"Each .bin file needs its own name (the report folder). Received: {[str(f) for f in files]}")
    embedder = inference.load_embedder(model, weights=weights, preprocess=opts.preprocess, batch_size=opts.batch_size)
    fused = embedder.contract.flip_fusion if embedder.contract is not None else "none"
    if fused != "none":
        raise ValueError(f"The export {embedder.name} already fuses each embedding with its mirror's ({fused}); "
                         f"both protocols here embed the mirror themselves. Evaluate the unfused model.")
    cache = inference.open_cache(opts.cache_dir, embedder.fingerprint)
    reports = {}
    for bin_set in sets:
        started = time.perf_counter()
        report, result, summary, stats = evaluate_bin_set(bin_set, embedder, opts, cache, fars)
        report.update(model=model_label(model, embedder), weights=None if weights is None else os.fspath(weights),
                      model_fingerprint=embedder.fingerprint, preprocess=embedder.preprocess,
                      crops=f"112x112 ArcFace-aligned, given to the model as {embedder.input_size[0]}x"
                            f"{embedder.input_size[1]}", images=len(bin_set.images),
                      embeddings_computed=stats.computed, embeddings_from_cache=stats.cached,
                      wall_seconds=round(time.perf_counter() - started, 2), command=command,
                      keras_sphereface_version=__version__)
        if out_dir is not None:
            _write_outputs(report, result, summary, Path(out_dir) / bin_set.name)
        if show:
            print_verification_table(report)
        reports[bin_set.name] = report
    if show:
        print_bin_summary(reports)
    return reports
