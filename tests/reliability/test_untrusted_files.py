"""Untrusted files never run code, and hostile sizes never allocate: weights, `.keras`, npz, caffemodels.

- `.keras` files load with Keras' `safe_mode` on: a `Lambda` layer (Python bytecode) is refused.
- `.npz` files are read without pickle (`read_npz`; elsewhere `np.load(..., allow_pickle=False)`):
  an object array is refused and its payload never runs.
- Length fields and shapes that claim more than the file holds are refused before any allocation.
- Nothing imports pickle but `data/bin_sets.py`, whose unpickler admits only NumPy's array globals
  (its own tests: `tests/data/test_bin_sets.py`).
"""

from __future__ import annotations

import ast
import io
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_sphereface.inference.load import load_embedder
from keras_sphereface.models.convert import caffe_proto
from keras_sphereface.models.convert.caffe_proto import ProtobufError
from keras_sphereface.models.convert.torch_npz import NpzError, read_npz

PACKAGE = Path(__file__).resolve().parents[2] / "keras_sphereface"


def _calls(function_name: str):
    """`(file, ast.Call)` of every call to `*.function_name(...)` in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == function_name:
                yield path.relative_to(PACKAGE.parent), node


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return ast.literal_eval(keyword.value)
    return "default"


def test_every_np_load_refuses_pickles_and_every_load_model_keeps_safe_mode():
    loads = list(_calls("load"))
    numpy_loads = [(path, call) for path, call in loads if getattr(call.func.value, "id", "") in ("np", "numpy")]
    assert all(_keyword(call, "allow_pickle") is False for _, call in numpy_loads), numpy_loads
    model_loads = list(_calls("load_model"))
    assert model_loads, "expected keras.saving.load_model calls in inference/ and export/"
    assert all(_keyword(call, "safe_mode") in ("default", True) for _, call in model_loads)
    # The one module that imports pickle: `.bin` sets, read by a restricted Unpickler (never pickle.load/loads).
    restricted = PACKAGE / "data" / "bin_sets.py"
    for banned in ("pickle", "marshal", "dill", "torch.load"):
        assert not [p for p in PACKAGE.rglob("*.py")
                    if f"import {banned}" in p.read_text(encoding="utf-8") and p != restricted]
    unrestricted = [(path, call.lineno) for name in ("load", "loads") for path, call in _calls(name)
                    if getattr(call.func.value, "id", "") == "pickle"]
    assert not unrestricted and "class _RestrictedUnpickler(pickle.Unpickler)" in restricted.read_text(encoding="utf-8")


class _Payload:
    """Unpickling this would create `marker`: proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_npz_with_a_pickled_object_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code_ran"
    hostile = tmp_path / "hostile.npz"
    np.savez(hostile, **{"conv.weight": np.ones(3, np.float32),
                         "evil": np.array([_Payload(marker)], dtype=object)})
    with pytest.raises(NpzError, match=r"hostile.npz, array 'evil' .*holds Python objects.*refused"):
        read_npz(hostile)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is real: unpickling does run it
    assert marker.exists()


def test_keras_file_with_a_lambda_layer_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((112, 96, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="code")(inputs)
    outputs = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="safe_mode"):
        load_embedder(path)


def _npz(arrays: dict, compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def test_npy_header_claiming_a_huge_array_is_refused_without_allocating(tmp_path):
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
    npy.write(np.zeros(4, np.float32).tobytes())  # 16 bytes where 4 TiB are promised
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", npy.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(NpzError, match=r"huge.npz, array 'w' .*header promises 4398046511104 bytes .*holds 16"):
            read_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


@pytest.mark.parametrize("field", ["uncompressed_size", "compressed_size"])
def test_zip_entry_claiming_a_huge_size_is_refused(tmp_path, field):
    data = bytearray(_npz({"w": np.arange(8, dtype=np.float32)}))
    central = data.index(b"PK\x01\x02")
    offset = central + (24 if field == "uncompressed_size" else 20)
    data[offset:offset + 4] = (0x7FFF0000).to_bytes(4, "little")
    path = tmp_path / "sizes.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(NpzError, match=r"sizes.npz"):
        read_npz(path)


def test_npz_over_the_size_cap_and_not_a_zip(tmp_path):
    path = tmp_path / "big.npz"
    path.write_bytes(_npz({"w": np.zeros(1000, np.float32)}, compressed=True))
    with pytest.raises(NpzError, match=r"claim 4\d\d\d bytes in all, more than max_bytes=1000"):
        read_npz(path, max_bytes=1000)
    assert read_npz(path)["w"].shape == (1000,)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(NpzError, match=r"text.npz is not a readable .npz file"):
        read_npz(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        read_npz(tmp_path / "missing.npz")


def test_caffemodel_length_field_of_2_to_the_60_is_refused(tmp_path):
    hostile = b"\x0a" + caffe_proto.encode_varint(2**60) + b"abc"
    with pytest.raises(ProtobufError, match=r"at byte offset 0: Field 1 runs past the end"):
        caffe_proto.decode_net(hostile)
    path = tmp_path / "hostile.caffemodel"
    path.write_bytes(b"\x0a\x01n" + b"\xa2\x06" + caffe_proto.encode_varint(2**40) + b"x" * 10)
    with pytest.raises(ProtobufError, match=r"hostile.caffemodel is not a readable caffemodel .*byte offset 3"):
        caffe_proto.read_caffemodel(path)


def test_blob_shape_claiming_trillions_of_values_is_refused():
    dims = caffe_proto.encode_varint(2**40) + caffe_proto.encode_varint(2**40)
    shape = b"\x3a" + bytes([len(dims) + 2]) + b"\x0a" + bytes([len(dims)]) + dims
    with pytest.raises(ProtobufError, match="blob data has 0 values"):
        caffe_proto.decode_blob(shape)
    zero_then_huge = caffe_proto.encode_varint(0) + caffe_proto.encode_varint(2**63)
    shape = b"\x3a" + bytes([len(zero_then_huge) + 2]) + b"\x0a" + bytes([len(zero_then_huge)]) + zero_then_huge
    with pytest.raises(ProtobufError, match="blob data has 0 values"):
        caffe_proto.decode_blob(shape)


@pytest.mark.parametrize(("data", "fragment"), [
    (b"\x0a\x02\xff\xfe", "the net name is not UTF-8 text"),
    (b"\x08\x05", "the net name must be length-delimited"),
    (b"\xa2\x06\x02\x10\x05", "the layer type must be length-delimited"),
    (b"\xa2\x06\x05\x3a\x03\x2a\x01\x00", "packed BlobProto.data has 1 bytes, not a multiple of 4"),
    (b"\xa2\x06\x03\x3a\x01\x2d", "Fixed-size field 5 is cut off"),
    (b"\x0b", "Unsupported wire type"),
])
def test_caffemodel_wrong_wire_types_and_text(data, fragment):
    with pytest.raises(ProtobufError, match=rf"at byte offset \d+: .*{fragment}"):
        caffe_proto.decode_net(data)


def test_zip_bomb_ratio_is_refused(tmp_path):
    """A member that claims to inflate more than deflate can is a corrupt or hostile header."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(3_000_000, np.uint8))
        archive.writestr("w.npy", buffer.getvalue())
    assert read_npz(path)["w"].shape == (3_000_000,)  # ~1000:1 is still possible for zeros
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    compressed = int.from_bytes(data[central + 20:central + 24], "little")
    data[central + 24:central + 28] = (compressed * 2000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(NpzError, match="more than compression allows"):
        read_npz(path)
