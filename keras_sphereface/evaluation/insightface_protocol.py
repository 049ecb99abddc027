"""insightface's verification protocol of `.bin` sets: squared distances, a 0..4 grid, contiguous folds, VAL@FAR.

As insightface's `verification.py` (arcface_mxnet and arcface_torch) evaluates `lfw.bin`,
`cfp_fp.bin`, `agedb_30.bin`, ..., written here from that description:

1. the feature of an image is `f(x) + f(flip(x))`, L2-normalized;
2. the score of a pair is the squared Euclidean distance of its two features (0..4; smaller is
   more alike), and a pair is called "same" when `distance < t`;
3. thresholds `t = 0, 0.01, ..., 3.99`; the pairs are cut into 10 contiguous folds in file order
   (scikit-learn's `KFold(10, shuffle=False)`: the first `n % 10` folds one pair longer);
4. per held-out fold, the threshold of best accuracy on the other folds (the first on the grid
   when several tie) is applied to it; the figure is the mean and the population standard
   deviation of the fold accuracies;
5. VAL@FAR: on a finer grid `0, 0.001, ..., 3.999`, per fold, the threshold at which the other
   folds' false accept rate reaches the target (linear interpolation of the threshold against the
   FAR over the grid; 0 when no threshold reaches it), and the validation rate (true accept rate)
   and FAR it gives on the held-out fold; mean and population standard deviation of the rates.

insightface interpolates with `scipy.interpolate.interp1d(far, thresholds, kind="slinear")`; here
`numpy.interp` over the distinct FAR values (each at the first grid threshold that reaches it)
does the same job without SciPy, and may differ from it in the last digits where FARs repeat.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_sphereface.utils.vectors import l2_normalize_rows

#: insightface's threshold grid on squared distances for the accuracy: `0, 0.01, ..., 3.99`.
THRESHOLDS = np.arange(0.0, 4.0, 0.01)
#: Its finer grid for VAL@FAR: `0, 0.001, ..., 3.999`.
VAL_THRESHOLDS = np.arange(0.0, 4.0, 0.001)
NUM_FOLDS = 10
#: The false accept rate insightface reports the validation rate at.
FAR_TARGET = 1e-3


def contiguous_folds(num_pairs: int, num_folds: int = NUM_FOLDS) -> np.ndarray:
    """Fold ids of `num_pairs` pairs cut into contiguous folds in order (the first `num_pairs % num_folds` one longer).

    Returns:
        `np.ndarray` of int, shape `(num_pairs,)`, values `0..num_folds-1`.

    Raises:
        ValueError: fewer pairs than folds, or fewer than 2 folds.
    """
    if num_folds < 2 or num_pairs < num_folds:
        raise ValueError(f"Contiguous k-fold needs at least 2 folds and one pair per fold. Received: "
                         f"num_pairs={num_pairs}, num_folds={num_folds}")
    sizes = np.full(num_folds, num_pairs // num_folds)
    sizes[: num_pairs % num_folds] += 1
    return np.repeat(np.arange(num_folds), sizes)


@dataclasses.dataclass(frozen=True)
class InsightfaceResult:
    """insightface's figures of one verification set.

    Attributes:
        fold_accuracies: `np.ndarray`, shape `(num_folds,)`. Accuracy of each held-out fold.
        thresholds: `np.ndarray`, shape `(num_folds,)`. The squared-distance threshold each fold used.
        val: `np.ndarray`, shape `(num_folds,)`. Validation rate (TAR) at `far_target` per fold.
        far: `np.ndarray`, shape `(num_folds,)`. The FAR reached on each held-out fold.
        far_target: float. The FAR the validation rate is given at.
        distances: `np.ndarray`, shape `(num_pairs,)`. Squared distance of each pair (0..4).
    """

    fold_accuracies: np.ndarray
    thresholds: np.ndarray
    val: np.ndarray
    far: np.ndarray
    far_target: float
    distances: np.ndarray

    def to_dict(self) -> dict:
        """The figures as JSON-ready numbers (accuracies and rates as fractions)."""
        return {
            "protocol": "insightface",
            "protocol_description": "f(x) + f(flip x), L2-normalized, squared Euclidean distance, thresholds "
                                    "0..4 step 0.01, 10 contiguous folds (no shuffling), best train threshold",
            "mean_accuracy": float(np.mean(self.fold_accuracies)),
            "std_accuracy": float(np.std(self.fold_accuracies)),
            "fold_accuracies": self.fold_accuracies.tolist(),
            "thresholds": self.thresholds.tolist(),
            "far_target": self.far_target,
            "val": float(np.mean(self.val)),
            "val_std": float(np.std(self.val)),
            "far": float(np.mean(self.far)),
        }


def _rates(distances: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, ...]:
    """Accuracy, true accept rate and false accept rate of each threshold (`distance < t` is "same")."""
    accepted = distances[None, :] < thresholds[:, None]
    true_accepts = np.sum(accepted & same, axis=1)
    false_accepts = np.sum(accepted & ~same, axis=1)
    accuracy = (true_accepts + np.sum(~accepted & ~same, axis=1)) / distances.size
    tar = true_accepts / max(int(same.sum()), 1)
    far = false_accepts / max(int((~same).sum()), 1)
    return accuracy, tar, far


def _threshold_at_far(far: np.ndarray, thresholds: np.ndarray, target: float) -> float:
    if far.max() < target:
        return 0.0
    values, first = np.unique(far, return_index=True)
    return float(np.interp(target, values, thresholds[first]))


def verify_insightface(
    embeddings: np.ndarray,
    flipped: np.ndarray,
    same: np.ndarray,
    num_folds: int = NUM_FOLDS,
    far_target: float = FAR_TARGET,
) -> InsightfaceResult:
    """insightface's protocol on the embeddings of a `.bin` set (pair `i`: rows `2i`, `2i + 1`).

    Args:
        embeddings: `np.ndarray`, shape `(2 * num_pairs, dim)`. Embeddings of the images.
        flipped: `np.ndarray`, shape `(2 * num_pairs, dim)`. Embeddings of their horizontal mirrors.
        same: `np.ndarray` of bool, shape `(num_pairs,)`.
        num_folds: int. Contiguous folds.
        far_target: float. The FAR of the validation rate.

    Returns:
        An `InsightfaceResult`.

    Raises:
        ValueError: shapes that do not match two images per pair.
    """
    same = np.asarray(same, dtype=bool)
    embeddings = np.asarray(embeddings, dtype=np.float64)
    flipped = np.asarray(flipped, dtype=np.float64)
    if embeddings.shape != flipped.shape or embeddings.ndim != 2 or embeddings.shape[0] != 2 * same.size:
        raise ValueError(f"Expected embeddings and flipped of shape (2 * num_pairs, dim) = ({2 * same.size}, dim). "
                         f"Received: embeddings.shape={embeddings.shape}, flipped.shape={flipped.shape}")
    features = l2_normalize_rows(embeddings + flipped)
    distances = np.sum((features[0::2] - features[1::2]) ** 2, axis=1)
    folds = contiguous_folds(same.size, num_folds)
    accuracies, thresholds, vals, fars = [], [], [], []
    for fold in range(num_folds):
        test = folds == fold
        train_accuracy, _, _ = _rates(distances[~test], same[~test], THRESHOLDS)
        best = float(THRESHOLDS[int(np.argmax(train_accuracy))])
        accuracy, _, _ = _rates(distances[test], same[test], np.array([best]))
        _, _, train_far = _rates(distances[~test], same[~test], VAL_THRESHOLDS)
        at_far = _threshold_at_far(train_far, VAL_THRESHOLDS, far_target)
        _, tar, far = _rates(distances[test], same[test], np.array([at_far]))
        accuracies.append(float(accuracy[0]))
        thresholds.append(best)
        vals.append(float(tar[0]))
        fars.append(float(far[0]))
    return InsightfaceResult(np.array(accuracies), np.array(thresholds), np.array(vals), np.array(fars),
                             float(far_target), distances)
