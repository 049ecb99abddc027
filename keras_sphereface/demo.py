"""The end-to-end demo that `make demo` / `ksf demo` runs: the user's whole path on real LFW faces.

1. Align: every LFW photo to the SphereFace template from its 5 landmarks (`ksf align`).
2. TFRecords of the LFW View 1 training people, `peopleDevTrain.txt` (`ksf make-tfrecords --people`).
3. Train: a short `ksf train` run of Sphere-4 + A-Softmax (m=4, Caffe lambda) from scratch on those
   records, validated on `pairsDevTest.txt` (no person shared with the training people).
4. LFW verification of the pretrained MobileFaceNet (CASIA-WebFace) under the SphereFace protocol
   (`ksf eval lfw`), and under the plain protocol, whose threshold the export keeps.
5. Margin heads on LFW-derived inputs: the same model's embeddings of every LFW identity with at
   least 10 images (158 people), split per identity into train and test images; a small adapter
   (`Dense`) is trained through `MarginInnerProduct` heads with m=1 (modified softmax) and m=4
   (A-Softmax, Caffe lambda schedule), and each is scored on the held-out images.
6. 1:N search on the same embeddings: a `Gallery` of one image per identity of part 5 (`ksf enroll`
   writes the same folder), every other image of those people searched in it (`ksf search`): rank-1.
7. Export the pretrained model for TensorFlow Serving (`ksf export`), then `ksf verify` one same and
   one different LFW pair through the exported SavedModel.

Everything is written under `out_dir`: `aligned/`, `records/`, `train/`, `lfw/` and `lfw-plain/`
(report.json, ROC and score plots), `gallery/`, `export/`, and `demo.json` with every part.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from keras_sphereface.utils.atomic import atomic_write


def lfw_folder(data_dir: str | Path) -> Path:
    """The LFW folder of a data root (`<data>/lfw`, or `data_dir` itself when it holds `pairs.txt`)."""
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
    # One direct call for both outputs on the whole test set: no predict function traced per model and
    # per partial batch (which is what made Keras warn about retracing here).
    scoring = keras.Model([embeddings_in, labels_in], [model.output, adapted])
    logits, features = (keras.ops.convert_to_numpy(t) for t in scoring([test_x, test_y], training=False))
    return {
        "m": m,
        "steps": int(keras.ops.convert_to_numpy(head.iteration)),
        "final_lambda": float(head.current_lambda) if m > 1 else None,
        "train_loss": float(history.history["loss"][-1]),
        "test_accuracy": float(np.mean(np.argmax(logits, axis=1) == test_y)),
        "test_angular_fisher_score": float(angular_fisher_score(features, test_y)),
    }


def _step(console, show: bool, title: str) -> None:
    if show:
        console.rule(title)


def _pair_paths(lfw: Path, same: bool) -> tuple[str, str]:
    """The first same (or different) pair of LFW `pairs.txt`, as paths relative to `images/`."""
    from keras_sphereface.evaluation import read_pairs

    pairs = read_pairs(lfw / "pairs.txt", fmt="lfw")
    index = int(np.flatnonzero(pairs.same == same)[0])
    return pairs.left[index], pairs.right[index]


def run_demo(
    data_dir: str | Path,
    out_dir: str | Path = "out/demo",
    model: str = "mobilefacenet",
    weights: str = "casia",
    min_images: int = 10,
    epochs: int = 30,
    train_steps: int = 200,
    show: bool = True,
) -> dict:
    """Runs every part of the demo (see the module docstring) and writes `<out_dir>/demo.json`.

    Args:
        data_dir: str or path-like. The data root holding `lfw/` (or the LFW folder itself).
        out_dir: str or path-like. Output folder. A second run reuses the aligned crops, the records
            and the training checkpoints found there.
        model, weights: the zoo model and weights tag evaluated, used in part 5 and exported.
        min_images: int. Identities with at least this many images take part in part 5.
        epochs: int. Training epochs of each margin head in part 5.
        train_steps: int. Steps of the from-scratch training run of part 3 (batch 64).
        show: bool. Print progress and tables.

    Returns:
        The dict written to `demo.json`.
    """
    from rich.console import Console

    from keras_sphereface.data import align_folder
    from keras_sphereface.data.manifest import read_manifest
    from keras_sphereface.data.records import write_tfrecords
    from keras_sphereface.evaluation import evaluate_lfw
    from keras_sphereface.export import export_savedmodel
    from keras_sphereface.inference import open_face_model, verify_pair
    from keras_sphereface.inference.contract import threshold_from_report
    from keras_sphereface.training import load_recipe, train

    started = time.perf_counter()
    lfw, out_dir = lfw_folder(data_dir), Path(out_dir)
    console = Console()
    result: dict = {}

    _step(console, show, "1. Align LFW to the SphereFace template (ksf align)")
    aligned = align_folder(lfw / "images", out_dir / "aligned", landmarks=lfw / "landmarks.txt", progress=show)
    result["align"] = {"aligned": aligned.aligned, "already_done": aligned.skipped_existing,
                       "failed": len(aligned.failures), "total": aligned.total, "out": str(out_dir / "aligned")}
    if show:
        console.print(f"{aligned.total - len(aligned.failures)} crops of 112x96 in {out_dir / 'aligned'}")

    _step(console, show, "2. TFRecords of the View 1 training people (ksf make-tfrecords --people)")
    records = out_dir / "records"
    manifest = read_manifest(str(records))
    if manifest is None:
        manifest = write_tfrecords(out_dir / "aligned", records, num_shards=8, people=lfw / "peopleDevTrain.txt")
    split = manifest["splits"]["train"]
    result["tfrecords"] = {"examples": split["num_examples"], "identities": split["num_classes"],
                           "pattern": str(records / "train-*.tfrecord")}
    if show:
        console.print(f"{split['num_examples']} images of {split['num_classes']} people in {records}")

    _step(console, show, f"3. Train Sphere-4 + A-Softmax from scratch, {train_steps} steps (ksf train)")
    config = load_recipe("lfw-devtrain_sphere4_asoftmax", tfrecords=str(records / "train-*.tfrecord"),
                         out=str(out_dir / "train"), steps=train_steps, epochs=None, seed=0,
                         validate_pairs=str(lfw / "pairsDevTest.txt"), validate_data=str(lfw),
                         validate_skip_missing=True,  # one pairsDevTest image is absent from this LFW copy
                         validate_every=train_steps, checkpoint_every=train_steps, progress=show)
    trained = train(config)
    result["train"] = {"steps": trained.step, "loss": trained.loss, "lambda": trained.current_lambda,
                       "pairsDevTest_accuracy": trained.val_accuracy, "final_weights": str(trained.final_weights)}
    if show:
        console.print(f"step {trained.step}: loss {trained.loss:.3f}, lambda {trained.current_lambda:.2f}, "
                      f"pairsDevTest accuracy {trained.val_accuracy:.2%}; model: {trained.final_keras}")

    _step(console, show, f"4. LFW verification of {model}(weights={weights!r}) (ksf eval lfw)")
    verification = evaluate_lfw(model, lfw, weights=weights, out_dir=out_dir / "lfw", show=show)
    plain = evaluate_lfw(model, lfw, weights=weights, protocol="plain", out_dir=out_dir / "lfw-plain", show=False)
    result["lfw_verification"] = {
        key: verification.get(key)
        for key in ("protocol", "mean_accuracy", "std_accuracy", "auc", "eer", "model", "weights")
    }
    result["lfw_plain"] = {"mean_accuracy": plain["mean_accuracy"], "mean_threshold": plain["mean_threshold"]}
    if show:
        console.print(f"plain protocol (one embedding per image, what a server computes): "
                      f"{plain['mean_accuracy']:.2%}, threshold {plain['mean_threshold']:.4f}")

    _step(console, show, f"5. MarginInnerProduct heads on LFW embeddings (identities with >= {min_images} images)")
    result["margin_heads"], embedded = _margin_heads(lfw, model, weights, min_images, epochs, console, show)

    _step(console, show, "6. 1:N search: a gallery of one image per person, the others searched in it")
    result["identification"] = _identification(*embedded, out_dir / "gallery", console, show)

    _step(console, show, "7. Export for TensorFlow Serving (ksf export), then ksf verify through it")
    exported = export_savedmodel(model, out_dir / "export", weights=weights,
                                 **threshold_from_report(out_dir / "lfw-plain" / "report.json"))
    face_model = open_face_model(str(exported.path))
    checks = {}
    for label, same in (("same", True), ("different", False)):
        left, right = _pair_paths(lfw, same)
        outcome = verify_pair(lfw / "images" / left, lfw / "images" / right, face_model, align="landmarks",
                              landmarks=lfw / "landmarks.txt")
        checks[label] = {"images": [left, right], "score": outcome.score, "same": outcome.same}
        if show:
            console.print(f"{label} pair {left} / {right}: {outcome.summary()}")
    result["export"] = {"path": str(exported.path), "verify": checks}
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    with atomic_write(out_dir / "demo.json") as handle:
        json.dump(result, handle, indent=2)
    if show:
        console.print(f"Report: {out_dir / 'demo.json'} ({result['wall_time_s']} s)")
    return result


def _identification(names: list[str], paths: list[str], embeddings: np.ndarray, embedder, folder: Path, console,
                    show: bool) -> dict:
    """Part 6: the first image of each identity enrolled in a `Gallery` (saved to `folder`), the rest searched."""
    from keras_sphereface.inference import Gallery, GalleryModel
    from keras_sphereface.utils.vectors import l2_normalize_rows

    embeddings = l2_normalize_rows(embeddings)
    first = {}
    for i, name in enumerate(names):
        first.setdefault(name, i)
    enrolled = np.zeros(len(names), dtype=bool)
    enrolled[list(first.values())] = True
    gallery = Gallery(GalleryModel.of_embedder(embedder, embeddings.shape[1]))
    gallery.add(embeddings[enrolled], [n for n, e in zip(names, enrolled, strict=True) if e],
                [p for p, e in zip(paths, enrolled, strict=True) if e])
    gallery.save(folder)
    tick = time.perf_counter()
    found = gallery.search(embeddings[~enrolled], k=1)
    seconds = time.perf_counter() - tick
    row_names = gallery.row_identities
    probes = [n for n, e in zip(names, enrolled, strict=True) if not e]
    rank1 = float(np.mean([row_names[i] == n for i, n in zip(found.indices[:, 0], probes, strict=True)]))
    part = {"gallery": str(folder), "gallery_identities": len(gallery), "probes": len(probes), "rank1": rank1,
            "search_seconds": round(seconds, 3)}
    if show:
        console.print(f"{len(probes)} probes searched among {len(gallery)} enrolled people in {seconds:.3f} s: "
                      f"rank-1 {rank1:.2%} (gallery: {folder})")
    return part


def _margin_heads(lfw: Path, model: str, weights: str, min_images: int, epochs: int, console,
                  show: bool) -> tuple[dict, tuple]:
    """Part 5: margin heads with m=1 and m=4 on the pretrained model's embeddings (module docstring).

    Returns:
        `(part, (names, paths, embeddings, embedder))`: the part's figures, and what part 6 searches.
    """
    from rich.table import Table

    from keras_sphereface.evaluation import angular_fisher_score
    from keras_sphereface.evaluation.sources import labelled_images, make_source
    from keras_sphereface.inference import EmbeddingCache, default_cache_dir, embed_images, load_embedder

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
    part = {
        "identities": len(identities),
        "train_images": int(train.sum()),
        "test_images": int(test.sum()),
        "pretrained_test_angular_fisher_score": float(angular_fisher_score(embeddings[test], labels[test])),
        "heads": heads,
    }
    if show:
        table = Table(title=f"{len(identities)} identities, {int(train.sum())} train / {int(test.sum())} test images")
        for column in ("features", "steps", "final lambda", "test accuracy", "test AFS (lower is better)"):
            table.add_column(column)
        table.add_row("pretrained", "-", "-", "-", f"{part['pretrained_test_angular_fisher_score']:.4f}")
        for head in heads:
            lam = "-" if head["final_lambda"] is None else f"{head['final_lambda']:.3f}"
            table.add_row(f"A-Softmax m={head['m']}", str(head["steps"]), lam,
                          f"{head['test_accuracy']:.2%}", f"{head['test_angular_fisher_score']:.4f}")
        console.print(table)
    return part, (names, paths, embeddings, embedder)
