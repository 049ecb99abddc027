"""The real export (MobileFaceNet casia, through `ksf export`) checked as TF Serving and its clients would use it.

No TF Serving model server runs here (none can be installed on these machines). What is checked for
real: a fresh process's `tf.saved_model.load`, `saved_model_cli show/run`, the warm-up file parsed as
`PredictionLog` records and replayed, `PredictRequest` protos built as a client does, and the README's
REST bodies decoded as TF Serving's JSON API does.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.export.conftest import subprocess_env

pytestmark = [pytest.mark.large, pytest.mark.tf_backend]

H, W, D = 112, 96, 128


def _saved_model_cli(*args: str) -> str:
    script = Path(sys.executable).parent / "saved_model_cli"  # TensorFlow's console script, beside python
    command = [str(script), *args] if script.is_file() else [
        sys.executable, "-c", "from tensorflow.python.tools.saved_model_cli import main; main()", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_fresh_process_load_matches_keras(casia_export, casia_reference, tmp_path):
    """A new Python process loads the export with `tf.saved_model.load`: embeddings equal Keras' to 1e-5."""
    out = tmp_path / "out.npz"
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(casia_export["version_dir"])!r})
        crops = np.load({str(casia_export["crops_npy"])!r})
        serve = loaded.signatures["serving_default"]
        png = [tf.io.encode_png(tf.constant(c, tf.uint8)).numpy() for c in crops.astype(np.uint8)]
        verify = loaded.signatures["verify"]
        scores = verify(images_a=tf.constant(crops[:-1]), images_b=tf.constant(crops[1:]),
                        threshold=tf.constant(0.0))
        np.savez({str(out)!r},
                 embedding=serve(images=tf.constant(crops))["embedding"].numpy(),
                 jpeg=loaded.signatures["embed_jpeg"](images=tf.constant(png))["embedding"].numpy(),
                 score=scores["score"].numpy(), same=scores["same"].numpy(),
                 dtype=str(serve.structured_outputs["embedding"].dtype.name))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as result:
        embedding, jpeg, score, same = result["embedding"], result["jpeg"], result["score"], result["same"]
        assert str(result["dtype"]) == "float32"
    assert embedding.dtype == np.float32 and embedding.shape == (len(casia_reference), D)
    np.testing.assert_allclose(embedding, casia_reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(jpeg, casia_reference, atol=1e-5)  # PNG is lossless: same pixels
    expected = np.sum(casia_reference[:-1] * casia_reference[1:], axis=1)
    np.testing.assert_allclose(score, expected, atol=1e-5)
    np.testing.assert_array_equal(same, score > 0.0)


def _signature_blocks(text: str) -> dict[str, str]:
    parts = re.split(r"^signature_def\['([^']+)'\]:\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _tensor(block: str, kind: str, name: str) -> tuple[str, str]:
    match = re.search(rf"{kind}\['{name}'\] tensor_info:\s*dtype: (\w+)\s*shape: (\([^)]*\))", block)
    assert match, f"{kind} {name!r} missing in:\n{block}"
    return match.group(1), match.group(2).replace(" ", "")


def test_saved_model_cli_show_lists_three_signatures(casia_export):
    blocks = _signature_blocks(_saved_model_cli("show", "--dir", str(casia_export["version_dir"]), "--all"))
    assert {"serving_default", "embed_jpeg", "verify"} <= set(blocks)
    image = ("DT_FLOAT", f"(-1,{H},{W},3)")
    embedding = ("DT_FLOAT", f"(-1,{D})")
    assert _tensor(blocks["serving_default"], "inputs", "images") == image
    assert _tensor(blocks["serving_default"], "outputs", "embedding") == embedding
    assert _tensor(blocks["embed_jpeg"], "inputs", "images") == ("DT_STRING", "(-1)")
    assert _tensor(blocks["embed_jpeg"], "outputs", "embedding") == embedding
    assert _tensor(blocks["verify"], "inputs", "images_a") == image
    assert _tensor(blocks["verify"], "inputs", "images_b") == image
    assert _tensor(blocks["verify"], "inputs", "threshold") == ("DT_FLOAT", "()")
    assert _tensor(blocks["verify"], "outputs", "score") == ("DT_FLOAT", "(-1)")
    assert _tensor(blocks["verify"], "outputs", "same") == ("DT_BOOL", "(-1)")
    for block in (blocks["serving_default"], blocks["embed_jpeg"], blocks["verify"]):
        assert "Method name is: tensorflow/serving/predict" in block


def test_saved_model_cli_run_on_npy(casia_export, casia_reference, tmp_path):
    _saved_model_cli("run", "--dir", str(casia_export["version_dir"]), "--tag_set", "serve",
                     "--signature_def", "serving_default", "--inputs", f"images={casia_export['crops_npy']}",
                     "--outdir", str(tmp_path))
    np.testing.assert_allclose(np.load(tmp_path / "embedding.npy"), casia_reference, atol=1e-5)


def test_warmup_file_parses_and_replays(casia_export, loaded_export):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = casia_export["version_dir"] / "assets.extra" / "tf_serving_warmup_requests"
    signatures = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == casia_export["name"]
        function = loaded_export.signatures[request.model_spec.signature_name]
        inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
        assert set(inputs) == set(function.structured_input_signature[1])
        outputs = function(**inputs)
        for value in outputs.values():
            assert value.shape[0] >= 1
        signatures.append(request.model_spec.signature_name)
    assert sorted(signatures) == ["embed_jpeg", "serving_default", "verify"]


def test_predict_request_protos_round_trip(casia_export, loaded_export, lfw_crops, casia_reference):
    """PredictRequest built as a gRPC client does, serialized, parsed, converted with tf.make_ndarray."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = casia_export["name"]
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(lfw_crops[1].astype(np.float32)))
    received = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    function = loaded_export.signatures[received.model_spec.signature_name]
    outputs = function(**{k: tf.constant(tf.make_ndarray(v)) for k, v in received.inputs.items()})
    reply = tf.make_tensor_proto(outputs["embedding"].numpy())  # what the server sends back
    np.testing.assert_allclose(tf.make_ndarray(reply), casia_reference, atol=1e-5)

    verify = predict_pb2.PredictRequest()
    verify.model_spec.signature_name = "verify"
    verify.inputs["images_a"].CopyFrom(tf.make_tensor_proto(lfw_crops[1][:2].astype(np.float32)))
    verify.inputs["images_b"].CopyFrom(tf.make_tensor_proto(lfw_crops[1][1:3].astype(np.float32)))
    verify.inputs["threshold"].CopyFrom(tf.make_tensor_proto(np.float32(0.99)))
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in verify.inputs.items()}
    result = loaded_export.signatures["verify"](**inputs)
    expected = np.sum(casia_reference[:2] * casia_reference[1:3], axis=1)
    np.testing.assert_allclose(result["score"].numpy(), expected, atol=1e-5)
    assert not result["same"].numpy().any()  # threshold 0.99 overrides the stored one


def _decode_json_value(value, dtype):
    """TF Serving's JSON -> tensor rule for one value: {"b64": ...} is binary, else nested lists of numbers."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list) and value and isinstance(value[0], dict) and set(value[0]) == {"b64"}:
        return np.array([base64.b64decode(v["b64"]) for v in value], dtype=object)
    return np.asarray(value, dtype=dtype)


def _decode_rest_body(body: dict, input_specs: dict) -> dict:
    """Decodes a `:predict` body (row `instances` or columnar `inputs`) into named input arrays."""
    if "instances" in body:
        rows = body["instances"]
        if isinstance(rows[0], dict) and set(rows[0]) != {"b64"}:
            return {k: np.stack([_decode_json_value(r[k], input_specs[k].dtype.as_numpy_dtype) for r in rows])
                    for k in rows[0]}
        ((name, spec),) = input_specs.items()
        if spec.dtype.name == "string":
            return {name: np.array([_decode_json_value(r, None) for r in rows], dtype=object)}
        return {name: np.asarray(rows, dtype=spec.dtype.as_numpy_dtype)}
    inputs = body["inputs"]
    if not isinstance(inputs, dict):
        ((name, spec),) = input_specs.items()
        inputs = {name: inputs}
    return {k: _decode_json_value(v, input_specs[k].dtype.as_numpy_dtype) for k, v in inputs.items()}


def test_readme_rest_bodies_decode_to_signature_inputs(casia_export, loaded_export):
    import tensorflow as tf

    root = casia_export["root"]
    readme = (root / "README.md").read_text(encoding="utf-8")
    for text in ("docker run", "tensorflow/serving", "tensorflow_model_server", "--model_config_file",
                 "predict_pb2.PredictRequest()", '"instances"', '"inputs"'):
        assert text in readme
    bodies = re.findall(r"-d @(\S+\.json)", readme)
    assert len(bodies) == 5
    results = {}
    for relative in bodies:
        body = json.loads((root / relative).read_text(encoding="utf-8"))
        function = loaded_export.signatures[body.get("signature_name", "serving_default")]
        specs = function.structured_input_signature[1]
        inputs = _decode_rest_body(body, specs)
        required = set(specs) - ({"threshold"} if body.get("signature_name") == "verify" else set())
        assert required <= set(inputs) <= set(specs), relative
        for key, value in inputs.items():
            assert tuple(value.shape)[1:] == tuple(specs[key].shape)[1:], (relative, key)
        if "threshold" not in inputs and "threshold" in specs:
            results[relative] = loaded_export.verify(**{k: tf.constant(v) for k, v in inputs.items()})
        else:
            results[relative] = function(**{k: tf.constant(v) for k, v in inputs.items()})
    rows, columns = (next(v for k, v in results.items() if k.endswith(f"serving_default.{form}.json"))["embedding"]
                     .numpy() for form in ("instances", "inputs"))
    np.testing.assert_allclose(columns[:1], rows, atol=1e-6)  # same image in row and columnar form
    jpeg = next(v for k, v in results.items() if "embed_jpeg" in k)["embedding"].numpy()
    np.testing.assert_allclose(jpeg, rows, atol=1e-5)


def test_verify_threshold_is_stored_and_overridable(casia_export, loaded_export, lfw_crops):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel.FromString((casia_export["version_dir"] / "saved_model.pb").read_bytes())
    defaults = model.meta_graphs[0].signature_def["verify"].defaults
    assert float(tf.make_ndarray(defaults["threshold"])) == pytest.approx(casia_export["threshold"])
    a, b = lfw_crops[1][:3].astype(np.float32), lfw_crops[1][1:4].astype(np.float32)
    stored = loaded_export.verify(tf.constant(a), tf.constant(b))  # the default applies
    np.testing.assert_array_equal(stored["same"].numpy(), stored["score"].numpy() > casia_export["threshold"])
    low = loaded_export.signatures["verify"](images_a=a, images_b=b, threshold=tf.constant(-1.0))
    assert low["same"].numpy().all()


def test_contract_and_config_travel_with_the_export(casia_export):
    from keras_sphereface.inference.contract import read_contract

    contract = read_contract(casia_export["root"] / "mobilefacenet")  # base dir: the latest version
    assert contract.model_name == "mobilefacenet" and contract.embedding_dim == D
    assert contract.input_size == (H, W) and contract.channel_order == "RGB"
    assert contract.preprocessing == "ksf" and "(x - 127.5) / 128" in contract.normalization
    assert contract.alignment_template == "sphereface" and len(contract.alignment_points) == 5
    assert contract.threshold == pytest.approx(casia_export["threshold"])
    assert contract.threshold_protocol == "plain" and "LFW" in contract.threshold_data
    assert contract.signatures == ("serving_default", "embed_jpeg", "verify")
    assert contract.flip_fusion == "none" and contract.l2_normalized and contract.preprocessing_in_graph
    config = (casia_export["root"] / "models.config").read_text(encoding="utf-8")
    assert 'name: "mobilefacenet"' in config and 'base_path: "/models/mobilefacenet"' in config
    assert "0.2412" in casia_export["output"] and "protocol plain" in casia_export["output"]


def test_embed_jpeg_decodes_jpeg_as_opencv_does(loaded_export, lfw_crops):
    import tensorflow as tf

    from keras_sphereface.data.images import decode_image_rgb, encode_image

    encoded = [encode_image(crop, "jpeg", quality=90) for crop in lfw_crops[1][:4]]
    decoded = np.stack([decode_image_rgb(data) for data in encoded]).astype(np.float32)
    from_bytes = loaded_export.signatures["embed_jpeg"](images=tf.constant(encoded))["embedding"].numpy()
    from_pixels = loaded_export.signatures["serving_default"](images=tf.constant(decoded))["embedding"].numpy()
    np.testing.assert_allclose(from_bytes, from_pixels, atol=1e-6)
