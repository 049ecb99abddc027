"""`load_embedder` / `ksf eval --model EXPORT_DIR` read the export's contract."""

from __future__ import annotations

import pytest

from keras_sphereface.evaluation import EmbeddingOptions, evaluate_pairs
from keras_sphereface.inference import load_embedder
from keras_sphereface.inference.contract import ContractError
from tests.evaluation.conftest import lfw_subset


def test_export_base_dir_loads_with_its_contract(casia_export):
    embedder = load_embedder(casia_export["root"] / "mobilefacenet")  # DIR/<name>: its highest version
    assert embedder.contract is not None and embedder.name == "mobilefacenet"
    assert embedder.preprocess == "none" and embedder.input_size == (112, 96)
    with pytest.raises(ContractError, match="normalizes inside its graph"):
        load_embedder(casia_export["version_dir"], preprocess="ksf")


@pytest.mark.slow
def test_eval_of_the_export_equals_eval_of_the_keras_model(casia_export, casia_model, lfw_dir, tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(lfw_subset(lfw_dir, 2, 10))
    quiet = EmbeddingOptions(cache_dir=False, progress=False)
    options = {"embedding": quiet, "show": False}
    exported = evaluate_pairs(pairs, str(casia_export["version_dir"]), lfw_dir, protocol="plain", **options)
    keras_model = evaluate_pairs(pairs, casia_model, lfw_dir, protocol="plain", **options)
    assert exported["preprocess"] == "none" and keras_model["preprocess"] == "ksf"
    assert abs(exported["mean_accuracy"] - keras_model["mean_accuracy"]) < 1e-9
    with pytest.raises(ValueError, match="use --template sphereface"):
        evaluate_pairs(pairs, str(casia_export["version_dir"]), lfw_dir, show=False,
                       embedding=EmbeddingOptions(template="arcface", crop_size=(112, 96), cache_dir=False))
