"""Training that converges with its defaults: batch-scaled rate, warm-up, clipping, the guard, staged margins.

Real steps of a tiny Sphere-4 (32x32, 32-d) on TFRecords of 8 LFW people (`conftest.TINY`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from keras_sphereface.training import HEAD_NAMES, TrainConfig, learning_rate_at, load_recipe, train

pytestmark = [pytest.mark.tf_backend]


def _rows(out) -> list[dict]:
    with open(Path(out) / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"clip_norm": 0.0}, r"`clip_norm` must be a number > 0 \(inf: no clipping\). Received: clip_norm=0.0"),
    ({"clip_norm": -5.0}, r"Received: clip_norm=-5.0"),
    ({"clip_norm": math.nan}, r"Received: clip_norm=nan"),
    ({"warmup_steps": 30, "steps": 30}, r"`warmup_steps` must be shorter than the run \(steps=30\)"),
    ({"warmup_fraction": 1.0}, r"`warmup_fraction` must be a number in \[0, 1\)"),
    ({"convergence_check_after": -1}, r"Received: convergence_check_after=-1"),
    ({"convergence_tolerance": 0.0}, r"`convergence_tolerance` must be a number in \(0, 1\)"),
    ({"lr_reference_batch": 0}, r"`lr_reference_batch` must be a positive integer"),
    ({"lambda_start": "keep"}, r"`lambda_start` must be one of \['schedule', 'floor'\]"),
])
def test_bad_options_are_refused_naming_the_option_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        load_recipe("lfw-devtrain_sphere4_asoftmax", tfrecords="x-*.tfrecord", out=str(tmp_path / "run"),
                    **overrides)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_bad_margin_schedule_stops_before_step_1(tiny, tmp_path):
    config = tiny(steps=3, head_options={"m": 4, "m_schedule": [[5, 1], [2, 4]]})
    with pytest.raises(ValueError, match=r"head_options for head 'a-softmax'.*strictly increasing"):
        train(config)
    assert not (Path(config.out) / "metrics.csv").exists()


def test_learning_rate_scales_with_the_batch_and_warms_up():
    config = TrainConfig(lr=0.1, lr_reference_batch=256, batch_size=64, steps=100, warmup_fraction=0.1,
                         lr_schedule="constant")
    assert learning_rate_at(0, config) == pytest.approx(0.025 / 10)  # step 1 of a 10-step warm-up
    assert learning_rate_at(9, config) == pytest.approx(0.025)
    assert learning_rate_at(50, config) == pytest.approx(0.025)
    paper = load_recipe("casia_sphere20_asoftmax")  # the recipes keep their papers' rates exactly
    assert learning_rate_at(0, paper) == pytest.approx(paper.lr) and paper.batch_size == paper.lr_reference_batch


@pytest.mark.slow
@pytest.mark.parametrize("head", HEAD_NAMES)
def test_every_head_trains_30_steps_at_batch_8_with_the_defaults(lfw_records, tmp_path, head):
    """The base config's defaults (lr 0.1 per 256, warm-up, clipping at 5), only model/head/batch given."""
    config = load_recipe(None, tfrecords=lfw_records, out=str(tmp_path / head), model="sphere4", head=head,
                         input_size=[32, 32], embedding_dim=32, align="landmarks", batch_size=8, steps=30, seed=1,
                         log_every=5, progress=False, shuffle_buffer=64)
    result = train(config)
    losses = [float(row["loss"]) for row in _rows(config.out)]
    assert result.step == 30 and all(math.isfinite(v) for v in losses), losses


@pytest.mark.slow
def test_the_guard_warns_in_metrics_csv_and_training_goes_on(tiny, capsys):
    config = tiny(steps=6, lr=0.0, convergence_check_after=3, log_every=1)
    result = train(config)
    rows = _rows(config.out)
    assert result.step == 6
    assert [bool(row["warning"]) for row in rows] == [False, False, True, True, True, True]
    assert "not converging at step 3" in rows[2]["warning"] and "ln(classes)" in rows[2]["warning"]
    out = capsys.readouterr().out
    assert out.count("not converging") == 1 and "m_schedule" in out  # said once, with the head's remedies


@pytest.mark.slow
def test_staged_margin_carries_iteration_and_floor_start_skips_the_annealing(tiny):
    staged = tiny(steps=6, head_options={"m": 4, "m_schedule": [[0, 1], [4, 4]]})
    train(staged)
    rows = _rows(staged.out)
    lambdas = [row["lambda"] for row in rows]
    assert lambdas[:3] == ["", "", ""]  # m=1: no lambda
    from keras_sphereface.layers import caffe_lambda

    assert [float(v) for v in lambdas[3:]] == pytest.approx([float(caffe_lambda(i)) for i in (4, 5, 6)])
    floor = tiny(steps=3, lambda_start="floor", out=str(Path(staged.out).parent / "floor"))
    train(floor)
    assert [float(row["lambda"]) for row in _rows(floor.out)] == [5.0, 5.0, 5.0]


@pytest.mark.slow
def test_clipping_bounds_the_update(tiny, tmp_path):
    """One SGD step (lr 1, no momentum or decay) moves the weights by at most lr * clip_norm (global norm)."""
    import keras

    def after_one_step(clip_norm, name):
        config = tiny(steps=1, lr=1.0, momentum=0.0, weight_decay=0.0, clip_norm=clip_norm, warmup_fraction=0.0,
                      out=str(tmp_path / name))
        train(config)
        return keras.saving.load_model(Path(config.out) / "final.keras").get_weights()

    def distance(a, b):  # same seed, same initial weights: the difference of the two updates
        return math.sqrt(sum(float(np.sum((x - y) ** 2)) for x, y in zip(a, b, strict=True)))

    tight, tighter = after_one_step(1e-3, "tight"), after_one_step(1e-4, "tighter")
    free = after_one_step(math.inf, "free")
    assert 0 < distance(tight, tighter) <= 1.1e-3
    assert distance(tight, free) > 1e-2


def test_cli_head_option_and_rate_options_reach_the_config(monkeypatch, tmp_path):
    from ksf.train import train as train_command

    seen = {}

    def fake_train(config):
        seen["config"] = config
        raise ValueError("stop here")

    monkeypatch.setattr("keras_sphereface.training.train", fake_train)
    result = CliRunner().invoke(train_command, [
        "--tfrecords", "x-*.tfrecord", "--recipe", "lfw-devtrain_sphere4_arcface", "--steps", "10",
        "--lr-reference-batch", "128", "--warmup-fraction", "0.1", "--clip-norm", "inf",
        "--head-option", "margin_warmup_steps=50", "--lambda-start", "floor", "--sample-rate", "0.3",
        "--out", str(tmp_path / "run")])
    assert "stop here" in result.output
    config = seen["config"]
    assert config.lr_reference_batch == 128 and config.warmup_fraction == 0.1 and math.isinf(config.clip_norm)
    assert config.head_options == {"s": 64.0, "m": 0.5, "margin_warmup_steps": 50} and config.lambda_start == "floor"
    assert config.sample_rate == 0.3
    bad = CliRunner().invoke(train_command, ["--tfrecords", "x", "--head-option", "m_schedule=[[0, 1]"])
    assert bad.exit_code == 2 and "--head-option" in bad.output
