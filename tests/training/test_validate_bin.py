"""`validate_bin` (`ksf train --validate-bin`): `.bin` sets checked before step 1, one `val/<name>` figure each."""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_sphereface.data.align import align_face, load_image_rgb, read_landmarks
from keras_sphereface.data.bin_sets import write_bin
from keras_sphereface.data.images import encode_image
from keras_sphereface.evaluation import read_pairs
from keras_sphereface.training import TrainConfig, train
from keras_sphereface.training.validation import BinSetError

pytestmark = [pytest.mark.tf_backend]


@pytest.fixture(scope="module")
def small_bin(lfw_dir, tmp_path_factory) -> Path:
    """20 real LFW pairs (10 same, 10 different, from pairs.txt) as 32x32 crops: the tiny model's input."""
    lines = (lfw_dir / "pairs.txt").read_text().splitlines()
    pairs_file = tmp_path_factory.mktemp("bin") / "pairs20.txt"
    pairs_file.write_text("1\t10\n" + "\n".join(lines[1:11] + lines[301:311]) + "\n")
    pairs = read_pairs(pairs_file)
    points = read_landmarks(lfw_dir / "landmarks.txt")
    images = [encode_image(align_face(load_image_rgb(lfw_dir / "images" / p), points[p], size=(32, 32)))
              for pair in zip(pairs.left, pairs.right, strict=True) for p in pair]
    return write_bin(pairs.same, images, pairs_file.with_name("lfw20.bin"))


def _scalars(run: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for event_file in sorted((run / "logs").glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    return found


def test_each_bin_set_is_a_figure_in_metrics_and_tensorboard(tiny, small_bin, tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(small_bin.read_bytes())
    result = train(tiny(steps=4, validate_every=2, validate_bin=f"{small_bin},{other}"))
    with open(Path(result.out) / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["val/lfw20"]]
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(0.0 <= float(r["val/lfw20"]) <= 1.0 and r["val/lfw20"] == r["val/other"] for r in rows)
    assert rows[0]["val_accuracy"] == ""  # no pair list
    assert result.val_accuracy == pytest.approx(float(rows[-1]["val/lfw20"]))
    scalars = _scalars(Path(result.out))
    assert len(scalars["val/lfw20"]) == 2 and len(scalars["val/other"]) == 2


def test_unusable_bin_sets_are_refused_before_anything_is_written(tiny, small_bin, tmp_path):
    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps((["x", "y"], [os.system])))
    for path, expected in ((tmp_path / "missing.bin", "not found"), (evil, "refused to load the global")):
        config = tiny(steps=2, validate_bin=[str(path)])
        with pytest.raises(BinSetError, match=expected) as caught:
            train(config)
        assert "before training" in str(caught.value) and str(path) in str(caught.value)
        assert not Path(config.out).exists()
    with pytest.raises(BinSetError, match=r"The model takes 40x40 inputs"):
        train(tiny(steps=2, input_size=[40, 40], validate_bin=[str(small_bin)]))


def test_validate_bin_option_checks():
    assert TrainConfig(validate_bin="a/lfw.bin, b/cfp_fp.bin").validate_bin == ["a/lfw.bin", "b/cfp_fp.bin"]
    with pytest.raises(ValueError, match="its own name"):
        TrainConfig(validate_bin=["a/lfw.bin", "b/lfw.bin"])
    with pytest.raises(ValueError, match="list of .bin file paths"):
        TrainConfig(validate_bin=[3])
    assert np.array_equal(TrainConfig().validate_bin, [])
