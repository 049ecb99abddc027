"""`ksf align` then `ksf make-tfrecords` as a user runs them: real processes on a real LFW subset."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from keras_sphereface.data.align import load_image_rgb


@pytest.mark.slow
def test_align_then_make_tfrecords_in_subprocesses(lfw_subset, tmp_path):
    photos, landmark_file, names = lfw_subset
    ksf = [sys.executable, "-m", "ksf"]
    aligned = tmp_path / "aligned"
    run = subprocess.run([*ksf, "align", str(photos), str(aligned), "--landmarks", str(landmark_file),
                          "--no-progress", "--strict"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert load_image_rgb(aligned / names[0]).shape == (112, 96, 3)
    run = subprocess.run([*ksf, "make-tfrecords", str(aligned), str(tmp_path / "records"), "--shards", "2",
                          "--val-fraction", "0.34", "--val-shards", "1"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((tmp_path / "records" / "manifest.json").read_text())
    splits = manifest["splits"]
    assert splits["train"]["num_examples"] + splits["val"]["num_examples"] == len(names)
    assert sorted(p.name for p in (tmp_path / "records").glob("*.tfrecord")) == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "val-00000-of-00001.tfrecord"]
