"""1:N identification protocols on embeddings: closed-set (CMC) and open-set (DIR at FAR), and the LFW split.

Pure NumPy. Every probe is scored against every gallery identity (an identity's score is the best
cosine over its gallery images):

- **Closed set**: a genuine probe (its person is in the gallery) has rank `r` = 1 + the number of other
  identities scoring at least as high as its mate (ties count against the probe). `CMC(r)` is the
  fraction of genuine probes of rank `<= r`.
- **Open set**: an impostor probe (its person is not in the gallery) is falsely accepted when its best
  identity score exceeds the threshold. The threshold at FAR `f` is the one of
  `keras_sphereface.evaluation.roc.tar_at_far` over the impostors' best scores: the `(k+1)`-th highest,
  `k = floor(f * n_impostors)`, so at most `k` impostors are accepted. `DIR(f)` (detection and
  identification rate) is the fraction of genuine probes of rank 1 whose mate score is above it.

`lfw_identification_split` is the deterministic LFW split of `docs/evaluation.md`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from keras_sphereface.evaluation.roc import TarAtFar, tar_at_far

#: Ranks a report gives the CMC at, and the false accept rates it gives DIR at.
DEFAULT_RANKS = (1, 5, 10)
DEFAULT_IDENTIFICATION_FARS = (1e-2, 1e-3)


@dataclasses.dataclass(frozen=True)
class IdentificationSplit:
    """Which images are gallery, genuine probes and impostor probes.

    Attributes:
        gallery: list of str. Gallery images (paths).
        gallery_labels: list of str. Their identities.
        probes: list of str. Genuine probes: images of gallery identities, not in the gallery.
        probe_labels: list of str. Their identities.
        impostors: list of str. Impostor probes: images of people absent from the gallery.
        impostor_labels: list of str. Their identities.
    """

    gallery: list[str]
    gallery_labels: list[str]
    probes: list[str]
    probe_labels: list[str]
    impostors: list[str]
    impostor_labels: list[str]

    def counts(self) -> dict[str, int]:
        """Images and identities of each part."""
        return {"gallery_images": len(self.gallery), "gallery_identities": len(set(self.gallery_labels)),
                "genuine_probes": len(self.probes), "impostor_probes": len(self.impostors),
                "impostor_identities": len(set(self.impostor_labels))}


def lfw_identification_split(paths: Sequence[str], labels: Sequence[str]) -> IdentificationSplit:
    """The deterministic identification split of labelled images (the LFW protocol of `docs/evaluation.md`).

    People with at least 2 images: their first image (in sorted path order, `<name>_0001.jpg` on LFW)
    is the gallery, the others are genuine probes. People with one image: impostor probes.

    Args:
        paths: sequence of str. Image paths.
        labels: sequence of str. The identity of each.

    Raises:
        ValueError: lengths differ, or no person has 2 images, or nobody has exactly one.
    """
    if len(paths) != len(labels):
        raise ValueError(f"paths and labels must have one length. Received: {len(paths)} and {len(labels)}")
    by_person: dict[str, list[str]] = {}
    for path, label in zip(paths, labels, strict=True):
        by_person.setdefault(str(label), []).append(str(path))
    split = IdentificationSplit([], [], [], [], [], [])
    for person in sorted(by_person):
        images = sorted(by_person[person])
        if len(images) == 1:
            split.impostors.append(images[0])
            split.impostor_labels.append(person)
            continue
        split.gallery.append(images[0])
        split.gallery_labels.append(person)
        split.probes.extend(images[1:])
        split.probe_labels.extend(person for _ in images[1:])
    if not split.gallery or not split.impostors:
        raise ValueError(f"An identification split needs people with 2 or more images (gallery and probes) and "
                         f"people with one (impostors). Received: {len(split.gallery)} and {len(split.impostors)}")
    return split


def identity_scores(probes: np.ndarray, gallery: np.ndarray, gallery_labels: Sequence[str]) -> tuple[np.ndarray,
                                                                                                   list[str]]:
    """Each probe's best cosine per gallery identity.

    Args:
        probes: float `(num_probes, dim)`. Unit embeddings.
        gallery: float `(num_gallery, dim)`. Unit embeddings.
        gallery_labels: sequence of str. Identity of each gallery row.

    Returns:
        `(scores, identities)`: float32 `(num_probes, num_identities)` and the identities (sorted) of its columns.
    """
    names, column = np.unique(np.asarray(gallery_labels, dtype=str), return_inverse=True)
    scores = np.asarray(probes, np.float32) @ np.asarray(gallery, np.float32).T
    if len(names) == len(column) and (column == np.arange(len(column))).all():
        return scores, names.tolist()
    best = np.full((len(scores), len(names)), -np.inf, dtype=np.float32)
    np.maximum.at(best.T, column, scores.T)
    return best, names.tolist()


def mate_ranks(scores: np.ndarray, identities: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """int `(num_probes,)`: the rank of each probe's mate (1 + other identities scoring at least as high)."""
    column = {name: i for i, name in enumerate(identities)}
    missing = sorted({label for label in labels if label not in column})
    if missing:
        raise ValueError(f"Genuine probes must have their identity in the gallery. Received: {missing[:5]}")
    mate = np.array([column[label] for label in labels], dtype=np.int64)
    mate_score = scores[np.arange(len(scores)), mate][:, None]
    return (scores >= mate_score).sum(axis=1).astype(np.int64)  # the mate itself counts once


def cmc_curve(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """float `(max_rank,)`: `cmc[r - 1]` is the fraction of probes whose mate rank is at most `r`."""
    ranks = np.asarray(ranks)
    return np.array([np.mean(ranks <= r) for r in range(1, max_rank + 1)], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class IdentificationResult:
    """Closed- and open-set identification figures.

    Attributes:
        cmc: float `(max_rank,)`. Identification rate at ranks 1..max_rank (closed set).
        ranks: tuple of int. The ranks reported.
        dir_at_far: tuple of `TarAtFar`. DIR (as `tar`) at each FAR, with its threshold and the FAR reached.
        mate_ranks: int `(num_probes,)`. Each genuine probe's mate rank.
        genuine_scores: float `(num_probes,)`. Each genuine probe's mate score.
        impostor_scores: float `(num_impostors,)`. Each impostor's best score.
        gallery_identities: int. Identities in the gallery.
    """

    cmc: np.ndarray
    ranks: tuple[int, ...]
    dir_at_far: tuple[TarAtFar, ...]
    mate_ranks: np.ndarray
    genuine_scores: np.ndarray
    impostor_scores: np.ndarray
    gallery_identities: int

    def rank_rate(self, rank: int) -> float:
        """The CMC at `rank` (the last value for ranks beyond the curve)."""
        return float(self.cmc[min(rank, len(self.cmc)) - 1])


def identify_embeddings(
    gallery: np.ndarray,
    gallery_labels: Sequence[str],
    probes: np.ndarray,
    probe_labels: Sequence[str],
    impostors: np.ndarray,
    ranks: Sequence[int] = DEFAULT_RANKS,
    fars: Sequence[float] = DEFAULT_IDENTIFICATION_FARS,
    max_rank: int = 20,
) -> IdentificationResult:
    """Closed-set CMC and open-set DIR@FAR of unit embeddings (see the module docstring).

    Args:
        gallery: float `(num_gallery, dim)`; gallery_labels: its identities.
        probes: float `(num_probes, dim)`. Genuine probes; probe_labels: their identities (all in the gallery).
        impostors: float `(num_impostors, dim)`. Probes of people not in the gallery.
        ranks: sequence of int. Ranks to report.
        fars: sequence of float. False accept rates (over impostors) to report DIR at.
        max_rank: int. Length of the CMC curve (capped at the number of gallery identities).

    Returns:
        An `IdentificationResult`.
    """
    scores, identities = identity_scores(probes, gallery, gallery_labels)
    ranks_of = mate_ranks(scores, identities, probe_labels)
    column = {name: i for i, name in enumerate(identities)}
    genuine = scores[np.arange(len(scores)), [column[label] for label in probe_labels]].astype(np.float64)
    impostor = identity_scores(impostors, gallery, gallery_labels)[0].max(axis=1).astype(np.float64)
    accepted = np.where(ranks_of == 1, genuine, -np.inf)  # a probe counts only when its mate is ranked first
    labels = np.concatenate([np.ones(len(accepted), bool), np.zeros(len(impostor), bool)])
    points = tuple(tar_at_far(np.concatenate([accepted, impostor]), labels, far) for far in fars)
    curve = cmc_curve(ranks_of, min(max([max_rank, *ranks]), len(identities)))
    return IdentificationResult(curve, tuple(int(r) for r in ranks), points, ranks_of, genuine, impostor,
                                len(identities))
