"""`ksf train`: CliRunner runs, a subprocess run stopped by SIGTERM and resumed, and `--tag` in a fresh process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ksf.main import cli
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.tf_backend]


def _tiny_recipe(tmp_path) -> Path:
    """A recipe file over the shipped one with the tiny test model (options without CLI flags)."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('base = "lfw-devtrain_sphere4_asoftmax"\ninput_size = [32, 32]\nembedding_dim = 32\n'
                      'align = true\nshuffle_buffer = 64\nlog_every = 1\n')
    return recipe


def test_help_lists_the_options():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--tfrecords", "--recipe", "--model", "--head", "--batch-size", "--steps", "--epochs", "--lr",
                   "--precision", "--strategy", "--out", "--resume", "--validate-pairs", "--validate-data", "--seed",
                   "--tag", "--random-crop", "--brightness", "--contrast", "--random-erase"):
        assert option in result.output, option


def test_usage_errors(lfw_records, tmp_path):
    runner = CliRunner()
    both = runner.invoke(cli, ["train", "--tfrecords", lfw_records, "--steps", "2", "--epochs", "1"])
    assert both.exit_code == 2 and "not both" in both.output
    unknown = runner.invoke(cli, ["train", "--tfrecords", lfw_records, "--recipe", "nope", "--steps", "1"])
    assert unknown.exit_code == 1 and "casia_sphere20_asoftmax" in unknown.output
    nothing = runner.invoke(cli, ["train", "--tfrecords", str(tmp_path / "x-*.tfrecord"), "--steps", "1",
                                  "--out", str(tmp_path / "o")])
    assert nothing.exit_code == 1 and "No TFRecord file matches" in nothing.output
    out = tmp_path / "crop"
    crop = runner.invoke(cli, ["train", "--tfrecords", lfw_records, "--steps", "1", "--random-crop", "1.5",
                               "--out", str(out)])
    assert crop.exit_code == 1 and "random_crop=1.5" in crop.output and not out.exists()


@pytest.mark.slow
def test_train_with_tag_loads_by_tag_in_a_fresh_process(lfw_records, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--tfrecords", lfw_records, "--recipe", str(_tiny_recipe(tmp_path)), "--batch-size", "8",
            "--steps", "3", "--seed", "3", "--no-progress", "--out", str(out), "--tag", "tiny-lfw"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Finished at step 3" in result.output
    assert (out / "final.keras").is_file() and (out / "final.weights.h5").is_file()
    faces = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "faces.npy", faces)
    script = ("import sys, numpy as np, keras\n"
              "from keras_sphereface.models import Sphere4\n"
              "faces = np.load(sys.argv[1])\n"
              "tagged = Sphere4(weights='tiny-lfw', input_shape=(32, 32, 3), embedding_dim=32)\n"
              "saved = keras.models.load_model(sys.argv[2])\n"
              "difference = tagged.predict(faces, verbose=0) - saved.predict(faces, verbose=0)\n"
              "print('MAXDIFF', float(np.abs(difference).max()))\n")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "faces.npy"), str(out / "final.keras")],
                         capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert run.returncode == 0, run.stderr[-3000:]
    difference = float(run.stdout.split("MAXDIFF")[-1])
    assert difference < 1e-5


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes(lfw_records, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "ksf", "train", "--tfrecords", lfw_records, "--recipe",
               str(_tiny_recipe(tmp_path)), "--batch-size", "8", "--seed", "3", "--no-progress", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([*command, "--steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=REPO_ROOT)
    lines = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("step 3 "):
                process.send_signal(signal.SIGTERM)
                break
        rest, _ = process.communicate(timeout=120)
        lines.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    output = "".join(lines)
    assert process.returncode == 143, output[-3000:]
    assert "SIGTERM received: checkpoint saved at step" in output and "Resume" in output
    stopped_at = int(output.split("checkpoint saved at step ")[1].split()[0])
    assert stopped_at >= 3
    assert not (out / "final.keras").exists()
    resumed = subprocess.run([*command, "--steps", str(stopped_at + 2)], capture_output=True, text=True,
                             timeout=180, env=env, cwd=REPO_ROOT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"Resuming from {out / 'checkpoints'}/ckpt-{stopped_at}: step {stopped_at}, epoch" in resumed.stdout
    assert "lambda" in resumed.stdout and f"Finished at step {stopped_at + 2}" in resumed.stdout
