"""Export behaviour on a tiny model: layout, atomicity, flip fusion, mixed precision, the head dropped, errors."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.export.conftest import l2, tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.tf_backend]


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _pixels(count=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, 16, 12, 3)).astype(np.float32)


def _keras_embeddings(model, pixels):
    from keras_sphereface.models.preprocessing import scale_pixels

    return np.asarray(model.predict(scale_pixels(pixels), verbose=0), dtype=np.float64)


def test_versions_layout_and_refusal(tmp_path):
    from keras_sphereface.export import export_savedmodel

    model = tiny_model()
    first = export_savedmodel(model, tmp_path, warmup=False)
    second = export_savedmodel(model, tmp_path, warmup=False)
    assert (first.name, first.version, second.version) == ("tiny", 1, 2)
    assert (tmp_path / "tiny" / "2" / "saved_model.pb").is_file()
    assert (tmp_path / "models.config").is_file() and (tmp_path / "README.md").is_file()
    before = _tree_digest(tmp_path / "tiny" / "1")
    with pytest.raises(FileExistsError, match="never overwritten"):
        export_savedmodel(model, tmp_path, version=1, warmup=False)
    assert _tree_digest(tmp_path / "tiny" / "1") == before
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["1", "2"]


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    from keras_sphereface.export import export_savedmodel, requests

    model = tiny_model()
    export_savedmodel(model, tmp_path, warmup=False)
    before = _tree_digest(tmp_path)

    def fail(directory, *args, **kwargs):
        assert (Path(directory) / "saved_model.pb").is_file()  # the SavedModel is half-way written
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(requests, "write_rest_examples", fail)
    with pytest.raises(OSError, match="simulated"):
        export_savedmodel(model, tmp_path, warmup=False)
    assert _tree_digest(tmp_path) == before  # version 1, models.config and README untouched
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["1"]  # no 2, no .2.tmp-*


def test_serving_default_matches_keras_and_batch_is_dynamic(tmp_path):
    import tensorflow as tf

    from keras_sphereface.export import export_savedmodel

    model = tiny_model()
    result = export_savedmodel(model, tmp_path, warmup=False)
    loaded = tf.saved_model.load(str(result.path))
    pixels = _pixels(5)
    for count in (1, 5):
        out = loaded.signatures["serving_default"](images=tf.constant(pixels[:count]))["embedding"].numpy()
        np.testing.assert_allclose(out, l2(_keras_embeddings(model, pixels[:count])), atol=1e-6)


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_flip_fusion_matches_the_evaluation_protocol(tmp_path, fusion):
    import tensorflow as tf

    from keras_sphereface.evaluation.protocol import combine_flip
    from keras_sphereface.export import export_savedmodel

    model = tiny_model()
    result = export_savedmodel(model, tmp_path, flip_fusion=fusion, warmup=False)
    pixels = _pixels(4)
    features = combine_flip(_keras_embeddings(model, pixels), _keras_embeddings(model, pixels[:, :, ::-1]), fusion)
    loaded = tf.saved_model.load(str(result.path))
    out = loaded.signatures["serving_default"](images=tf.constant(pixels))["embedding"].numpy()
    assert out.shape == (4, 16 if fusion == "concat" else 8)
    assert result.contract.embedding_dim == out.shape[1] and result.contract.flip_fusion == fusion
    np.testing.assert_allclose(out, l2(features), atol=1e-6)


def test_mixed_precision_model_exports_float32(tmp_path):
    import tensorflow as tf

    from keras_sphereface.export import export_savedmodel

    model = tiny_model(dtype="mixed_float16")
    assert model.output.dtype == "float16"
    result = export_savedmodel(model, tmp_path, threshold=0.1, warmup=False)
    loaded = tf.saved_model.load(str(result.path))
    serve = loaded.signatures["serving_default"]
    assert serve.structured_outputs["embedding"].dtype == tf.float32
    assert loaded.signatures["verify"].structured_outputs["score"].dtype == tf.float32
    out = serve(images=tf.constant(_pixels(2)))["embedding"].numpy()
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_training_model_exports_only_the_embedding_network(tmp_path):
    from keras_sphereface.export import embedding_network, export_savedmodel
    from keras_sphereface.layers import ArcFace
    from keras_sphereface.models import build_training_model

    backbone = tiny_model()
    training = build_training_model(backbone, ArcFace(10))
    assert embedding_network(training) is backbone
    result = export_savedmodel(training, tmp_path, warmup=False)
    assert result.name == "tiny" and result.contract.embedding_dim == 8
    with pytest.raises(ValueError, match="embedding network"):
        import keras

        embedding_network(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


def test_embed_jpeg_refuses_a_wrong_size(tmp_path):
    import tensorflow as tf

    from keras_sphereface.export import export_savedmodel

    result = export_savedmodel(tiny_model(), tmp_path, warmup=False)
    loaded = tf.saved_model.load(str(result.path))
    wrong = tf.io.encode_png(tf.zeros((20, 20, 3), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="aligned crops of 16x12"):
        loaded.signatures["embed_jpeg"](images=tf.stack([wrong]))


def test_without_threshold_verify_requires_one(tmp_path):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    from keras_sphereface.export import export_savedmodel

    result = export_savedmodel(tiny_model(), tmp_path, warmup=False)
    assert result.contract.threshold is None
    graph = saved_model_pb2.SavedModel.FromString((result.path / "saved_model.pb").read_bytes())
    assert "threshold" not in graph.meta_graphs[0].signature_def["verify"].defaults
    loaded = tf.saved_model.load(str(result.path))
    pixels = tf.constant(_pixels(2))
    out = loaded.signatures["verify"](images_a=pixels, images_b=pixels, threshold=tf.constant(0.5))
    assert out["same"].numpy().all()  # identical images: cosine 1


def test_warns_when_the_threshold_protocol_does_not_match(tmp_path):
    from keras_sphereface.export import ThresholdProtocolWarning, export_savedmodel

    with pytest.warns(ThresholdProtocolWarning, match="'plain' protocol"):
        export_savedmodel(tiny_model(), tmp_path, threshold=0.2, threshold_protocol="sphereface", warmup=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        export_savedmodel(tiny_model(), tmp_path, flip_fusion=True, threshold=0.2,
                          threshold_protocol="sphereface", warmup=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"format": "pb"}, ValueError, "format must be one of"),
        ({"version": 0}, ValueError, "positive integer"),
        ({"name": "../x"}, ValueError, "export name"),
        ({"flip_fusion": "mean"}, ValueError, "flip_fusion"),
        ({"threshold_protocol": "plain"}, ValueError, "pass threshold"),
        ({"weights": "casia"}, ValueError, "holds its own weights"),
        ({"example_images": np.zeros((2, 8, 8, 3), np.uint8)}, ValueError, "example_images"),
    ],
)
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, error, match):
    from keras_sphereface.export import export_model

    with pytest.raises(error, match=match):
        export_model(tiny_model(), tmp_path, warmup=False, **kwargs)
    assert not (tmp_path / "tiny").exists() or not any((tmp_path / "tiny").iterdir())


def test_missing_optional_packages_give_clear_messages(tmp_path, monkeypatch):
    import sys

    from keras_sphereface.export import export_model

    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(ImportError, match=r"keras-sphereface\[export\]"):
        export_model(tiny_model(), tmp_path, format="onnx")
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(ImportError, match=r"keras-sphereface\[serving\]"):
        export_model(tiny_model(), tmp_path)
    assert not list(tmp_path.iterdir())


def test_export_command_on_a_keras_file(tmp_path):
    import json

    from click.testing import CliRunner

    from keras_sphereface.inference.contract import read_contract
    from ksf.main import cli

    model_file = tmp_path / "tiny.keras"
    tiny_model().save(model_file)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"protocol": "sphereface", "mean_threshold": 0.27, "mean_accuracy": 0.99,
                                  "dataset": "LFW", "command": "ksf eval lfw"}))
    out = tmp_path / "exports"
    result = CliRunner().invoke(cli, ["export", "--model", str(model_file), "--out", str(out),
                                      "--threshold-from", str(report), "--no-warmup"])
    assert result.exit_code == 0, result.output
    assert "Warning:" in result.output and "'plain' protocol" in result.output
    assert not (out / "tiny" / "1" / "assets.extra" / "tf_serving_warmup_requests").exists()
    fused = CliRunner().invoke(cli, ["export", "--model", str(model_file), "--out", str(out), "--flip-fusion",
                                     "--threshold-from", str(report), "--format", "onnx"])
    assert fused.exit_code == 0, fused.output
    assert "Warning:" not in fused.output
    contract = read_contract(out / "tiny-onnx")
    assert (contract.flip_fusion, contract.embedding_dim, contract.format) == ("concat", 16, "onnx")
    assert contract.threshold == 0.27 and contract.threshold_source == "ksf eval lfw"
    missing = CliRunner().invoke(cli, ["export", "--model", str(model_file)])
    assert missing.exit_code == 2 and "--out" in missing.output
