"""TFLite and ONNX exports of the real model against Keras on real aligned LFW crops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytestmark = [pytest.mark.large, pytest.mark.tf_backend]


def test_tflite_matches_keras(casia_model, lfw_crops, casia_reference, tmp_path):
    import tensorflow as tf

    from keras_sphereface.export import export_tflite
    from keras_sphereface.inference.contract import read_contract

    result = export_tflite(casia_model, tmp_path, name="mfn", threshold=0.3)
    assert result.path == tmp_path / "mfn" / "1" and (result.path / "model.tflite").is_file()
    contract = read_contract(result.path)
    assert contract.format == "tflite" and contract.signatures == ("serving_default",)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(result.path / "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    crops = lfw_crops[1].astype(np.float32)
    embedding = runner(images=crops)["embedding"]  # batch of 7: the batch dimension is dynamic
    assert embedding.dtype == np.float32 and embedding.shape == casia_reference.shape
    np.testing.assert_allclose(embedding, casia_reference, atol=1e-5)
    single = runner(images=crops[:1])["embedding"]
    np.testing.assert_allclose(single, casia_reference[:1], atol=1e-5)


def test_onnx_matches_keras(casia_model, lfw_crops, casia_reference, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from keras_sphereface.export import export_onnx

    result = export_onnx(casia_model, tmp_path)
    assert result.name == "mobilefacenet-onnx" and (result.path / "model.onnx").is_file()
    session = onnxruntime.InferenceSession(str(result.path / "model.onnx"), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "images" and graph_input.shape[1:] == [112, 96, 3]
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    (embedding,) = session.run(None, {"images": lfw_crops[1].astype(np.float32)})
    np.testing.assert_allclose(embedding, casia_reference, atol=1e-5)
