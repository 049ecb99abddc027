"""LFW accuracy of MobileFaceNet (casia) under alignment conventions closer to SphereFace's MATLAB code.

SphereFace aligned LFW with `cp2tform(landmarks, template, 'similarity')` and `imtransform` (MATLAB,
1-based pixel indices); the library aligns with OpenCV (pixel centres at integers) and fits the
similarity from the image to the template. Each variant changes one or more of:

- `fit`: `image_to_template` (ours) or `template_to_image` (least squares in image pixels, then
  inverted, as `cp2tform` does);
- `landmark_shift` / `template_shift`: subtracted from the landmarks / template before fitting, so
  `1.0` reads the numbers as 1-based (MATLAB) indices;
- `interpolation`: `bilinear` (ours, and `imtransform`'s default) or `bicubic`.

Every variant is one full LFW View 2 evaluation (10 folds, SphereFace protocol: image + mirror
features concatenated, per-fold mean subtracted, cosine). The embedding cache key includes all the
settings, so `--cache-dir` makes reruns cheap and never mixes variants.

Each variant is also compared pair by pair with the first one listed (`default` unless told):
`fixed` / `broken` count the pairs it classifies correctly / wrongly where the first did the
opposite (each pair judged at its own fold's threshold), with an exact two-sided sign-test p-value
on those discordant pairs, and the per-fold accuracy differences. Fold standard deviations (about
0.4 points) mostly measure how hard the folds are, not the alignment, so the paired figures are the
ones to judge a small gain by.

It also counts the faces for which `cp2tform`'s reflective similarity (it tries both and keeps the
smaller residual) would win: such faces would be mirrored by the MATLAB code.

Usage:
    KSF_DATA_DIR=... KSF_WEIGHTS_DIR=... python bench/alignment_conventions.py \\
        --data $KSF_DATA_DIR/lfw [--variants default,fit_t2i,...] [--cache-dir DIR]
Prints one JSON line: per variant the mean and std (ddof=0) accuracy (%), the 10 fold accuracies and
the paired comparison with the first variant, then the header of `bench/_report.py` (hardware,
versions, backend, threads).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
from _report import emit  # bench/_report.py: the header every bench script reports

from keras_sphereface import inference
from keras_sphereface.data.align import align_face, get_template, read_landmarks, similarity_transform
from keras_sphereface.data.face_source import FaceSource
from keras_sphereface.evaluation.pairs import read_pairs
from keras_sphereface.evaluation.protocol import get_protocol, verify_embeddings

#: name -> (fit, landmark_shift, template_shift, interpolation)
VARIANTS = {
    "default": ("image_to_template", 0.0, 0.0, "bilinear"),
    "fit_t2i": ("template_to_image", 0.0, 0.0, "bilinear"),
    "template_1based": ("image_to_template", 0.0, 1.0, "bilinear"),
    "landmarks_1based": ("image_to_template", 1.0, 0.0, "bilinear"),
    "both_1based": ("image_to_template", 1.0, 1.0, "bilinear"),
    "bicubic": ("image_to_template", 0.0, 0.0, "bicubic"),
    "matlab_like": ("template_to_image", 1.0, 1.0, "bilinear"),
    "fit_t2i_bicubic": ("template_to_image", 0.0, 0.0, "bicubic"),
}


@dataclasses.dataclass
class VariantSource(FaceSource):
    """A `FaceSource` whose crops follow one variant's conventions."""

    fit: str = "image_to_template"
    landmark_shift: float = 0.0
    template_shift: float = 0.0

    def describe(self) -> str:
        return (f"{super().describe()}:fit={self.fit}:landmark_shift={self.landmark_shift}"
                f":template_shift={self.template_shift}")

    def crop(self, path: str, data: bytes) -> np.ndarray:
        from keras_sphereface.data.images import decode_image_rgb

        image = decode_image_rgb(data, source=self.root / path)
        points = np.asarray(self.landmarks[path], dtype=np.float64) - self.landmark_shift
        template = get_template(self.template, self.size).astype(np.float64) - self.template_shift
        return align_face(image, points, template=template, size=self.size,
                          interpolation=self.interpolation, fit=self.fit)


def _residual(src: np.ndarray, dst: np.ndarray) -> float:
    matrix = similarity_transform(src, dst)
    return float(np.linalg.norm(src @ matrix[:, :2].T + matrix[:, 2] - dst))


def reflective_wins(landmarks: dict) -> int:
    """Faces whose landmarks fit a mirrored template better (`cp2tform` would pick the reflection)."""
    template = get_template().astype(np.float64)
    mirrored = template * np.array([-1.0, 1.0])
    wins = 0
    for points in landmarks.values():
        points = np.asarray(points, dtype=np.float64)
        wins += _residual(mirrored, points) < _residual(template, points)
    return wins


def pair_correct(result) -> np.ndarray:
    """Whether each pair is classified correctly at its fold's threshold (as `correct_counts` judges)."""
    threshold = result.thresholds[result.folds]
    return np.where(result.same, result.scores > threshold, result.scores < threshold)


def sign_test(fixed: int, broken: int) -> float:
    """Exact two-sided binomial sign test of `fixed` against `broken` discordant pairs."""
    total = fixed + broken
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(min(fixed, broken) + 1)) / 2.0**total
    return min(1.0, 2.0 * tail)


def paired(result, baseline) -> dict:
    """Pair-level and fold-level comparison of `result` with `baseline` (same pairs, same folds)."""
    now, before = pair_correct(result), pair_correct(baseline)
    fixed, broken = int(np.sum(now & ~before)), int(np.sum(~now & before))
    diff = 100 * (np.asarray(result.fold_accuracies) - np.asarray(baseline.fold_accuracies))
    return {"fixed": fixed, "broken": broken, "sign_test_p": round(sign_test(fixed, broken), 4),
            "fold_diff": [round(float(d), 2) for d in diff], "folds_better": int(np.sum(diff > 1e-9)),
            "folds_worse": int(np.sum(diff < -1e-9))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="LFW folder (images/, pairs.txt, landmarks.txt).")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated, of {list(VARIANTS)}.")
    parser.add_argument("--model", default="mobilefacenet")
    parser.add_argument("--weights", default="casia")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache-dir", default=None, help="Embedding cache folder (default: no cache).")
    args = parser.parse_args()

    data = Path(args.data)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"Unknown variants {unknown}; expected some of {list(VARIANTS)}")
    pairs = read_pairs(data / "pairs.txt", fmt="lfw")
    landmarks = read_landmarks(data / "landmarks.txt")
    paths = pairs.image_paths()
    index = {p: i for i, p in enumerate(paths)}
    left = np.array([index[p] for p in pairs.left])
    right = np.array([index[p] for p in pairs.right])
    protocol = get_protocol("sphereface")
    embedder = inference.load_embedder(args.model, weights=args.weights, batch_size=args.batch_size)
    cache = None if args.cache_dir is None else inference.EmbeddingCache(args.cache_dir, embedder.fingerprint)

    results, baseline = {}, None
    for name in names:
        fit, landmark_shift, template_shift, interpolation = VARIANTS[name]
        source = VariantSource(data / "images", landmarks, interpolation=interpolation, fit=fit,
                               landmark_shift=landmark_shift, template_shift=template_shift)
        start = time.perf_counter()
        features, flipped, _ = inference.embed_images(embedder, paths, source, flip=True,
                                                      batch_size=args.batch_size, cache=cache, progress=False)
        result = verify_embeddings(features, flipped, left, right, pairs.same, pairs.folds, protocol)
        results[name] = {
            "fit": fit, "landmark_shift": landmark_shift, "template_shift": template_shift,
            "interpolation": interpolation,
            "mean": round(100 * result.mean_accuracy, 3), "std": round(100 * result.std_accuracy, 3),
            "folds": [round(100 * float(a), 2) for a in result.fold_accuracies],
            "seconds": round(time.perf_counter() - start, 1),
        }
        if baseline is None:
            baseline = (name, result)
        else:
            results[name][f"vs_{baseline[0]}"] = paired(result, baseline[1])
    emit({
        "what": "LFW View 2 accuracy (%) of MobileFaceNet per alignment convention, SphereFace protocol",
        "model": args.model, "weights": args.weights, "images": len(paths), "pairs": len(pairs.same),
        "reflective_similarity_wins": reflective_wins(landmarks), "faces": len(landmarks),
        "variants": results,
    })


if __name__ == "__main__":
    main()
