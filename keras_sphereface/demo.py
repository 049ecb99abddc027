"""The end-to-end demo that `make demo` / `ksf demo` runs, on real LFW faces.

1. LFW verification of the pretrained MobileFaceNet (CASIA-WebFace) under the SphereFace
   protocol: 5-point alignment of every `pairs.txt` image, flip features, 10 folds.
2. Margin heads on LFW-derived inputs: the same model's embeddings of every LFW identity
   with at least 10 images (158 people), split per identity into train and test images; a
   small adapter (`Dense`) is trained through `MarginInnerProduct` heads with m=1 (modified
   softmax) and m=4 (A-Softmax, Caffe lambda schedule), and each is scored on the held-out
   images: identification accuracy of the margin-free logits and the Angular Fisher Score of
   the adapted features (lower is more compact).

Everything is written under `out_dir`: `lfw/` (report.json, roc.png, scores_hist.png) and
`demo.json` with both parts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from keras_sphereface.utils.atomic import atomic_write


def _lfw_folder(data_dir: str | Path) -> Path:
    data_dir = Path(data_dir)
    lfw = data_dir / "lfw" if (data_dir / "lfw").is_dir() else data_dir
    if not (lfw / "pairs.txt").is_file():
        raise FileNotFoundError(
            f"No LFW here: expected {lfw / 'pairs.txt'} (pass the data root holding lfw/, e.g. "
            f"$KSF_DATA_DIR). Received: data_dir={str(data_dir)!r}"
        )
    return lfw


def split_per_identity(labels: np.ndarray, test_every: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Boolean train/test masks: every `test_every`-th image of each identity is held out.

    Args:
        labels: int array `(num_images,)`, images of an identity in a stable order.
        test_every: int >= 2.

    Returns:
        `(train_mask, test_mask)`, both `(num_images,)`; every identity has images in both.
    """
    position = np.zeros(len(labels), dtype=int)
    seen: dict[int, int] = {}
    for i, label in enumerate(labels):
        position[i] = seen.get(int(label), 0)
        seen[int(label)] = position[i] + 1
    test = position % test_every == test_every - 1
    return ~test, test


def train_margin_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    m: int,
    epochs: int = 30,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """Trains `Dense(dim) -> MarginInnerProduct(m)` on fixed embeddings and scores held-out images.

    Args:
        train_x, test_x: float32 `(n, dim)` embeddings.
        train_y, test_y: int `(n,)` identity ids in `[0, num_identities)`.
        m: int in 1..4. The A-Softmax margin.
        epochs, batch_size, seed: training settings (Adam, learning rate 1e-3).

    Returns:
        dict: `m`, `steps`, `final_lambda`, `train_loss` (last epoch), `test_accuracy` (top-1 of
        the margin-free logits) and `test_angular_fisher_score` of the adapted test features.
    """
    import keras

    from keras_sphereface.evaluation import angular_fisher_score
    from keras_sphereface.layers import MarginInnerProduct

    keras.utils.set_random_seed(seed)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    embeddings_in = keras.Input((train_x.shape[1],), name="embedding")
    labels_in = keras.Input((), dtype="int32", name="label")
    adapted = keras.layers.Dense(train_x.shape[1], name="adapter")(embeddings_in)
    head = MarginInnerProduct(num_classes, m=m, name="a_softmax")
    model = keras.Model([embeddings_in, labels_in], head([adapted, labels_in]))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(
        [train_x, train_y], train_y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0
    )
    logits = model.predict([test_x, test_y], batch_size=256, verbose=0)
    features = keras.Model(embeddings_in, adapted).predict(test_x, batch_size=256, verbose=0)
    return {
        "m": m,
        "steps": int(keras.ops.convert_to_numpy(head.iteration)),
        "final_lambda": float(head.current_lambda) if m > 1 else None,
        "train_loss": float(history.history["loss"][-1]),
        "test_accuracy": float(np.mean(np.argmax(logits, axis=1) == test_y)),
        "test_angular_fisher_score": float(angular_fisher_score(features, test_y)),
    }


def run_demo(
    data_dir: str | Path,
    out_dir: str | Path = "out/demo",
    model: str = "mobilefacenet",
    weights: str = "casia",
    min_images: int = 10,
    epochs: int = 30,
    show: bool = True,
) -> dict:
    """Runs both parts of the demo (see the module docstring) and writes `<out_dir>/demo.json`.

    Args:
        data_dir: str or path-like. The data root holding `lfw/` (or the LFW folder itself).
        out_dir: str or path-like. Output folder.
        model, weights: the zoo model and weights tag to use.
        min_images: int. Identities with at least this many images take part in part 2.
        epochs: int. Training epochs of each margin head in part 2.
        show: bool. Print tables.

    Returns:
        The dict written to `demo.json`.
    """
    from rich.console import Console
    from rich.table import Table

    from keras_sphereface.evaluation import angular_fisher_score, evaluate_lfw
    from keras_sphereface.evaluation.evaluate import labelled_images, make_source
    from keras_sphereface.inference import EmbeddingCache, default_cache_dir, embed_images, load_embedder

    started = time.perf_counter()
    lfw, out_dir = _lfw_folder(data_dir), Path(out_dir)
    console = Console()
    if show:
        console.rule("1. LFW verification (SphereFace protocol)")
    verification = evaluate_lfw(model, lfw, weights=weights, out_dir=out_dir / "lfw", show=show)

    if show:
        console.rule(f"2. MarginInnerProduct heads on LFW embeddings (identities with >= {min_images} images)")
    source = make_source(lfw)
    paths, names = labelled_images(source.root, min_images)
    identities = sorted(set(names))
    labels = np.array([identities.index(n) for n in names])
    embedder = load_embedder(model, weights)
    cache = EmbeddingCache(default_cache_dir(), embedder.fingerprint)
    embeddings, _, _ = embed_images(embedder, paths, source, flip=False, cache=cache, progress=show)
    train, test = split_per_identity(labels)
    heads = [
        train_margin_head(embeddings[train], labels[train], embeddings[test], labels[test], m=m, epochs=epochs)
        for m in (1, 4)
    ]
    result = {
        "lfw_verification": {
            key: verification.get(key)
            for key in ("protocol", "mean_accuracy", "std_accuracy", "auc", "eer", "model", "weights")
        },
        "margin_heads": {
            "identities": len(identities),
            "train_images": int(train.sum()),
            "test_images": int(test.sum()),
            "pretrained_test_angular_fisher_score": float(angular_fisher_score(embeddings[test], labels[test])),
            "heads": heads,
        },
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    with atomic_write(out_dir / "demo.json") as handle:
        json.dump(result, handle, indent=2)
    if show:
        table = Table(title=f"{len(identities)} identities, {int(train.sum())} train / {int(test.sum())} test images")
        for column in ("features", "steps", "final lambda", "test accuracy", "test AFS (lower is better)"):
            table.add_column(column)
        table.add_row("pretrained", "-", "-", "-",
                      f"{result['margin_heads']['pretrained_test_angular_fisher_score']:.4f}")
        for head in heads:
            lam = "-" if head["final_lambda"] is None else f"{head['final_lambda']:.3f}"
            table.add_row(f"A-Softmax m={head['m']}", str(head["steps"]), lam,
                          f"{head['test_accuracy']:.2%}", f"{head['test_angular_fisher_score']:.4f}")
        console.print(table)
        console.print(f"Report: {out_dir / 'demo.json'} ({result['wall_time_s']} s)")
    return result
