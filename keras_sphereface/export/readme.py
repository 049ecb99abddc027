"""The README written into an export folder: how to serve the export and call each signature."""

from __future__ import annotations

from keras_sphereface.inference.contract import CONTRACT_FILENAME, CONTRACT_SUBDIR, Contract

_SIGNATURE_ROWS = (
    ("serving_default", "`images` float32 `(batch, {h}, {w}, 3)`: aligned RGB crops, pixel values 0..255",
     "`embedding` float32 `(batch, {d})`, unit L2 norm"),
    ("embed_jpeg", "`images` string `(batch,)`: encoded JPEG/PNG aligned crops of {h}x{w}",
     "`embedding` float32 `(batch, {d})`, unit L2 norm"),
    ("verify", "`images_a`, `images_b` float32 `(batch, {h}, {w}, 3)`; `threshold` float32 scalar{opt}",
     "`score` float32 `(batch,)` cosine; `same` bool `(batch,)` = score > threshold"),
)


def readme_text(contract: Contract, name: str, version: int) -> str:
    """The README (Markdown) of an export folder holding `name/version`, for `contract`."""
    h, w = contract.input_size
    d = contract.embedding_dim
    optional = (f" (optional: default {contract.threshold:.4f}, stored)" if contract.threshold is not None
                else " (required: no threshold is stored)")
    rows = "\n".join(
        f"| `{sig}` | {inputs.format(h=h, w=w, opt=optional)} | {outputs.format(d=d)} |"
        for sig, inputs, outputs in _SIGNATURE_ROWS
    )
    examples = f"{name}/{version}/assets.extra/examples"
    threshold = contract.describe_threshold()
    return f"""# TensorFlow Serving export: `{name}`

Written by `ksf export` (keras_sphereface {contract.keras_sphereface_version}). Layout:

```
models.config                       # model server config listing every model here
{name}/{version}/saved_model.pb     # the SavedModel (one folder per version)
{name}/{version}/variables/
{name}/{version}/{CONTRACT_SUBDIR}/{CONTRACT_FILENAME}            # preprocessing contract
{name}/{version}/assets.extra/tf_serving_warmup_requests   # replayed by the server at load
{name}/{version}/assets.extra/examples/*.json              # the REST bodies used below
```

## What the model expects

- Faces aligned with the 5-point `{contract.alignment_template}` template to {h}x{w} (height x width)
  pixels, {contract.channel_order}, pixel values 0..255. Normalization `{contract.normalization}` is inside the
  graph: send pixels, not normalized values.
- Embeddings: {d} floats, unit L2 norm{", flip fusion " + contract.flip_fusion if contract.flip_fusion != "none"
                                        else ""}; the cosine of two faces is the dot product.
- Threshold: {threshold}.

| signature | inputs | outputs |
|---|---|---|
{rows}

Inspect it with `saved_model_cli show --dir {name}/{version} --all`.

## Start the model server

With Docker, from this folder (gRPC on 8500, REST on 8501):

```bash
docker run --rm -p 8500:8500 -p 8501:8501 -v "$PWD:/models" tensorflow/serving \\
    --model_config_file=/models/models.config
# or one model only:
docker run --rm -p 8500:8500 -p 8501:8501 -v "$PWD/{name}:/models/{name}" \\
    -e MODEL_NAME={name} tensorflow/serving
```

With the `tensorflow_model_server` binary:

```bash
tensorflow_model_server --port=8500 --rest_api_port=8501 \\
    --model_name={name} --model_base_path="$PWD/{name}"
```

The server loads the highest version and replays the warm-up file first.

## REST

```bash
# one image, row format: {{"instances": [image]}}, image = {h} rows of {w} [r, g, b] pixels
curl -s -X POST http://localhost:8501/v1/models/{name}:predict -d @{examples}/serving_default.instances.json
# a batch, columnar format: {{"inputs": {{"images": [image, image]}}}}
curl -s -X POST http://localhost:8501/v1/models/{name}:predict -d @{examples}/serving_default.inputs.json
# encoded crops: {{"signature_name": "embed_jpeg", "instances": [{{"b64": "<base64 of the JPEG/PNG file>"}}]}}
curl -s -X POST http://localhost:8501/v1/models/{name}:predict -d @{examples}/embed_jpeg.instances.json
# verification: {{"signature_name": "verify", "inputs": {{"images_a": [...], "images_b": [...]}}}}
curl -s -X POST http://localhost:8501/v1/models/{name}:predict -d @{examples}/verify.inputs.json
# the same with a threshold of your own: add "threshold": 0.5 to "inputs"
curl -s -X POST http://localhost:8501/v1/models/{name}:predict -d @{examples}/verify_threshold.inputs.json
```

Build a body from your own aligned crop (`crop`: `uint8` array `({h}, {w}, 3)`, RGB):

```python
import json
body = {{"signature_name": "serving_default", "instances": [crop.tolist()]}}
json.dump(body, open("request.json", "w"))
```

Answers: `{{"predictions": [...]}}` for `instances`, `{{"outputs": ...}}` for `inputs`.

## gRPC

```python
import grpc, numpy as np, tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel("localhost:8500"))
request = predict_pb2.PredictRequest()
request.model_spec.name = "{name}"
request.model_spec.signature_name = "serving_default"
request.inputs["images"].CopyFrom(tf.make_tensor_proto(crops.astype(np.float32)))  # (batch, {h}, {w}, 3)
embedding = tf.make_ndarray(stub.Predict(request, 10.0).outputs["embedding"])      # (batch, {d})

request = predict_pb2.PredictRequest()
request.model_spec.name = "{name}"
request.model_spec.signature_name = "verify"
request.inputs["images_a"].CopyFrom(tf.make_tensor_proto(crops_a.astype(np.float32)))
request.inputs["images_b"].CopyFrom(tf.make_tensor_proto(crops_b.astype(np.float32)))
# optional: request.inputs["threshold"].CopyFrom(tf.make_tensor_proto(np.float32(0.5)))
reply = stub.Predict(request, 10.0)
score, same = tf.make_ndarray(reply.outputs["score"]), tf.make_ndarray(reply.outputs["same"])
```

`pip install tensorflow-serving-api` provides the protos and the gRPC stub.
"""
