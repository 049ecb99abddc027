"""The demo's building blocks: the per-identity split and margin-head training on fixed embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from keras_sphereface.demo import lfw_folder, split_per_identity, train_margin_head


def test_split_per_identity_holds_out_every_third_image_of_each_identity():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2])
    train, test = split_per_identity(labels)
    assert test.tolist() == [False, False, True, False, False, False, True, False, False, True, False, False, True]
    assert np.all(train == ~test)
    assert set(labels[test]) == set(labels[train]) == {0, 1, 2}


@pytest.mark.slow
@pytest.mark.parametrize("m", [1, 4])
def test_train_margin_head_learns_separable_identities(m):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16)).astype(np.float32)
    labels = np.repeat(np.arange(6), 12)
    x = centres[labels] + 0.3 * rng.normal(size=(len(labels), 16)).astype(np.float32)
    train, test = split_per_identity(labels)
    result = train_margin_head(x[train], labels[train], x[test], labels[test], m=m, epochs=80, batch_size=16)
    assert result["steps"] == 80 * int(np.ceil(train.sum() / 16))
    assert result["test_accuracy"] > 0.9
    assert 0.0 < result["test_angular_fisher_score"] < 0.5
    assert (result["final_lambda"] is None) == (m == 1)


def test_lfw_folder_error_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="pairs.txt.*Received: data_dir="):
        lfw_folder(tmp_path)
