"""Real training steps of a tiny Sphere-4 (32x32 input, 32-d embeddings) on TFRecords of 8 LFW people."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sphereface.layers import caffe_lambda
from keras_sphereface.training import (
    NonFiniteLossError,
    PairListError,
    RecordsError,
    latest_complete_checkpoint,
    train,
)

pytestmark = [pytest.mark.tf_backend]


def _rows(out) -> list[dict]:
    with open(Path(out) / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _weights(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.slow
def test_loss_decreases_lambda_follows_caffe_checkpoints_and_final_model(tiny):
    config = tiny(steps=30, checkpoint_every=10, keep_checkpoints=2, lr=0.01)
    result = train(config)
    out = Path(config.out)
    rows = [r for r in _rows(out) if r["loss"]]
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    losses = np.array([float(r["loss"]) for r in rows])
    assert np.all(np.isfinite(losses))
    assert losses[-5:].mean() < losses[:5].mean() - 0.2, losses
    # lambda of each logged step is the Caffe schedule at that iteration: 1000 / (1 + 0.12 i), >= 5.
    lambdas = np.array([float(r["lambda"]) for r in rows])
    expected = np.maximum(1000.0 / (1.0 + 0.12 * np.arange(1, 31)), 5.0)
    np.testing.assert_allclose(lambdas, expected, rtol=1e-5)
    assert result.current_lambda == pytest.approx(float(caffe_lambda(30, 1000.0, 0.12, 1.0, 5.0)))
    # Checkpoints 20 and 30 kept (keep_checkpoints=2), each with the optimizer slots and input position.
    state = tf.train.get_checkpoint_state(str(out / "checkpoints"))
    assert [Path(p).name for p in state.all_model_checkpoint_paths] == ["ckpt-20", "ckpt-30"]
    names = [name for name, _ in tf.train.list_variables(str(out / "checkpoints" / "ckpt-30"))]
    slots = [n for n in names if n.startswith("optimizer/_variables/")]  # SGD momentum, one per weight
    assert len(slots) >= len(result.model.trainable_weights) + 1, names  # backbone weights + the head's kernel
    assert any(n.startswith("input/") for n in names)
    assert any("iteration" in n for n in names)
    # config.toml reproduces the run; the final model is the backbone alone, in both formats.
    from keras_sphereface.models import Sphere4
    from keras_sphereface.training import load_recipe

    assert load_recipe(out / "config.toml") == config.replace(seed=config.seed)
    loaded = keras.models.load_model(out / "final.keras")
    assert loaded.output_shape == (None, 32) and all(layer.name != "head" for layer in loaded.layers)
    rebuilt = Sphere4(weights=str(out / "final.weights.h5"), input_shape=(32, 32, 3), embedding_dim=32)
    faces = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(rebuilt.predict(faces, verbose=0), loaded.predict(faces, verbose=0), atol=1e-6)
    np.testing.assert_allclose(result.model.predict(faces, verbose=0), loaded.predict(faces, verbose=0), atol=1e-6)


@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_with_the_uninterrupted_weights(tiny, tmp_path):
    straight = train(tiny(steps=12, deterministic=True, out=str(tmp_path / "straight"), checkpoint_every=100))
    first = train(tiny(steps=5, deterministic=True, out=str(tmp_path / "resumed"), checkpoint_every=100))
    assert first.step == 5 and first.resumed_from is None
    second = train(tiny(steps=12, deterministic=True, out=str(tmp_path / "resumed"), checkpoint_every=100))
    assert second.resumed_from == 5 and second.step == 12
    assert second.current_lambda == pytest.approx(straight.current_lambda)
    for a, b in zip(_weights(straight.model), _weights(second.model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The resumed run's log continues from step 5, without duplicated rows.
    steps = [int(r["step"]) for r in _rows(tmp_path / "resumed") if r["loss"]]
    assert steps == list(range(1, 13))
    assert _rows(tmp_path / "straight")[-1]["loss"] == pytest.approx(_rows(tmp_path / "resumed")[-1]["loss"])


def test_half_written_checkpoint_is_never_picked(tmp_path):
    variable = tf.Variable([1.0, 2.0])
    checkpoint = tf.train.Checkpoint(v=variable)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=3)
    manager.save(checkpoint_number=1)
    variable.assign([3.0, 4.0])
    manager.save(checkpoint_number=2)
    # A checkpoint being written: data without index, and a temporary folder; not in the state file.
    (tmp_path / "ckpt-3.data-00000-of-00001").write_bytes(b"partial")
    (tmp_path / "ckpt-3_temp").mkdir()
    assert Path(latest_complete_checkpoint(tmp_path)).name == "ckpt-2"
    # A listed checkpoint that lost its index falls back to the previous complete one.
    (tmp_path / "ckpt-2.index").unlink()
    latest = latest_complete_checkpoint(tmp_path)
    assert Path(latest).name == "ckpt-1"
    tf.train.Checkpoint(v=variable).restore(latest)
    np.testing.assert_array_equal(variable.numpy(), [1.0, 2.0])
    assert latest_complete_checkpoint(tmp_path / "empty") is None


@pytest.mark.slow
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_good_checkpoint(tiny):
    train(tiny(steps=4, checkpoint_every=4))
    with pytest.raises(NonFiniteLossError, match=r"step \d+") as caught:
        train(tiny(steps=40, lr=1e9, checkpoint_every=1))
    error = caught.value
    out = Path(tiny().out)
    latest = latest_complete_checkpoint(out / "checkpoints")
    step_of_latest = int(Path(latest).name.split("-")[1])
    assert step_of_latest < error.step
    reader = tf.train.load_checkpoint(latest)
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            assert np.all(np.isfinite(reader.get_tensor(name))), name
    # --no-resume starts over from step 0 in the same folder.
    again = train(tiny(steps=2, resume=False))
    assert again.resumed_from is None and again.step == 2


@pytest.mark.slow
def test_on_nan_skip_skips_updates_and_keeps_weights_finite(tiny):
    result = train(tiny(steps=6, lr=1e9, on_nan="skip"))
    assert result.skipped_steps, "lr=1e9 must produce non-finite steps"
    assert result.step == 6
    assert all(np.all(np.isfinite(w)) for w in _weights(result.model))


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.slow
def test_mixed_precision_steps_are_finite_with_float32_logits(tiny, precision):
    from keras_sphereface.models import build_training_model
    from keras_sphereface.training import make_head
    from keras_sphereface.training.backbone import build_backbone

    result = train(tiny(steps=3, precision=precision))
    assert np.isfinite(result.loss)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    keras.mixed_precision.set_global_policy(precision)
    try:
        config = tiny()
        model = build_training_model(build_backbone(config), make_head("a-softmax", 8, {"m": 4}))
        images = np.zeros((2, 32, 32, 3), "float32")
        logits = model([images, np.array([1, 2], "int32")], training=True)
        backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        assert backbone.compute_dtype == precision.split("_")[1]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert logits.dtype == tf.float32


@pytest.mark.slow
def test_jit_compiled_steps_match_the_graph_steps(tiny, tmp_path):
    """XLA changes how the step runs, not what it computes: the same weights, lambda and loss."""
    graph = train(tiny(steps=4, deterministic=True, out=str(tmp_path / "graph")))
    xla = train(tiny(steps=4, deterministic=True, jit_compile=True, out=str(tmp_path / "xla")))
    assert xla.step == 4 and xla.current_lambda == pytest.approx(graph.current_lambda)
    assert xla.loss == pytest.approx(graph.loss, rel=1e-3)
    for a, b in zip(_weights(graph.model), _weights(xla.model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert "jit_compile = true" in (tmp_path / "xla" / "config.toml").read_text()


def test_bad_pair_list_is_reported_before_training(tiny, tmp_path, lfw_dir):
    pairs = tmp_path / "pairs.txt"
    same = "Aaron_Peirsol/Aaron_Peirsol_0001.jpg Aaron_Peirsol/Aaron_Peirsol_0002.jpg 1\n"
    different = "Aaron_Peirsol/Aaron_Peirsol_0001.jpg Abdullah_Gul/Abdullah_Gul_0001.jpg 0\n"
    pairs.write_text(same * 10 + different * 9 + different.replace("Abdullah_Gul/Abdullah_Gul", "No_Such/No_Such"))
    config = tiny(steps=3, validate_pairs=str(pairs), validate_data=str(lfw_dir))
    with pytest.raises(PairListError, match="No_Such/No_Such_0001.jpg") as caught:
        train(config)
    assert "before training" in str(caught.value)
    assert not Path(config.out).exists()
    with pytest.raises(PairListError, match="not found"):
        train(tiny(steps=3, validate_pairs=str(tmp_path / "missing.txt"), validate_data=str(lfw_dir)))
    pairs.write_text("Aaron_Peirsol/Aaron_Peirsol_0001.jpg\n")
    with pytest.raises(PairListError, match="line 1"):
        train(tiny(steps=3, validate_pairs=str(pairs), validate_data=str(lfw_dir)))


@pytest.mark.slow
def test_labels_beyond_labels_json_are_reported(lfw_records, tiny, tmp_path):
    copy = tmp_path / "records"
    shutil.copytree(Path(lfw_records).parent, copy)
    labels = json.loads((copy / "labels.json").read_text())
    labels["num_classes"] = 3
    (copy / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(RecordsError, match="num_classes"):
        train(tiny(steps=3, tfrecords=str(copy / "train-*.tfrecord")))


def test_records_without_labels_json_are_refused(lfw_records, tiny, tmp_path):
    copy = tmp_path / "records"
    copy.mkdir()
    for path in Path(lfw_records).parent.glob("train-*.tfrecord"):
        shutil.copy(path, copy / path.name)
    with pytest.raises(RecordsError, match="labels.json"):
        train(tiny(steps=3, tfrecords=str(copy / "train-*.tfrecord")))
    with pytest.raises(RecordsError, match="No TFRecord"):
        train(tiny(steps=3, tfrecords=str(tmp_path / "none-*.tfrecord")))
