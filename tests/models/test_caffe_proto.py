"""The hand-written caffemodel codec, checked against Google's protobuf runtime on a caffe.proto subset."""

from __future__ import annotations

import numpy as np
import pytest

from keras_sphereface.models.convert import caffe_proto
from keras_sphereface.models.convert.caffe_proto import CaffeLayer, ProtobufError

descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
message_factory = pytest.importorskip("google.protobuf.message_factory")
descriptor_pool = pytest.importorskip("google.protobuf.descriptor_pool")


@pytest.fixture(scope="module")
def caffe_messages():
    """NetParameter/LayerParameter/BlobProto/BlobShape/V1LayerParameter with caffe.proto's field numbers."""
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")

    def message(name, fields):
        m = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name, packed in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
            if packed:
                f.options.packed = True

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BlobShape", [("dim", 1, F.TYPE_INT64, rep, None, True)])
    message("BlobProto", [
        ("shape", 7, F.TYPE_MESSAGE, opt, ".caffe.BlobShape", False),
        ("data", 5, F.TYPE_FLOAT, rep, None, True),
        ("double_data", 8, F.TYPE_DOUBLE, rep, None, True),
        ("num", 1, F.TYPE_INT32, opt, None, False), ("channels", 2, F.TYPE_INT32, opt, None, False),
        ("height", 3, F.TYPE_INT32, opt, None, False), ("width", 4, F.TYPE_INT32, opt, None, False),
    ])
    message("LayerParameter", [
        ("name", 1, F.TYPE_STRING, opt, None, False), ("type", 2, F.TYPE_STRING, opt, None, False),
        ("bottom", 3, F.TYPE_STRING, rep, None, False), ("top", 4, F.TYPE_STRING, rep, None, False),
        ("blobs", 7, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False),
        ("loss_weight", 5, F.TYPE_FLOAT, rep, None, False),
    ])
    message("V1LayerParameter", [
        ("name", 4, F.TYPE_STRING, opt, None, False), ("type", 5, F.TYPE_INT32, opt, None, False),
        ("blobs", 6, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False),
    ])
    message("NetParameter", [
        ("name", 1, F.TYPE_STRING, opt, None, False),
        ("layer", 100, F.TYPE_MESSAGE, rep, ".caffe.LayerParameter", False),
        ("layers", 2, F.TYPE_MESSAGE, rep, ".caffe.V1LayerParameter", False),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
            for name in ("NetParameter", "BlobProto")}


def test_varint_round_trip_and_known_bytes():
    assert caffe_proto.encode_varint(300) == b"\xac\x02"  # the protobuf documentation's example
    for value in (0, 1, 127, 128, 2**31, 2**63 - 1):
        encoded = caffe_proto.encode_varint(value)
        assert caffe_proto.read_varint(encoded, 0) == (value, len(encoded))


def test_our_bytes_parse_with_protobuf(caffe_messages):
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    data = caffe_proto.encode_net("sphere_test", [CaffeLayer("conv1_1", "Convolution", [conv, bias]),
                                                  CaffeLayer("relu1_1", "PReLU", [np.full(4, 0.25, np.float32)])])
    net = caffe_messages["NetParameter"].FromString(data)
    assert net.name == "sphere_test" and [layer.name for layer in net.layer] == ["conv1_1", "relu1_1"]
    assert net.layer[0].type == "Convolution"
    assert list(net.layer[0].blobs[0].shape.dim) == [4, 3, 3, 3]
    assert np.array_equal(np.array(net.layer[0].blobs[0].data, np.float32), conv.ravel())
    assert np.array_equal(np.array(net.layer[0].blobs[1].data, np.float32), bias)


def test_protobuf_bytes_parse_with_ours(caffe_messages):
    net = caffe_messages["NetParameter"](name="legacy")
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(2, 5)).astype(np.float32)
    layer = net.layer.add(name="fc5", type="InnerProduct", bottom=["x"], top=["fc5"], loss_weight=[1.0])
    layer.blobs.add(num=1, channels=1, height=2, width=5).data.extend(weights.ravel().tolist())  # legacy 4-D
    layer.blobs.add().double_data.extend([1.5, -2.0])
    layer.blobs[1].shape.dim.extend([2])
    old = net.layers.add(name="conv_v1", type=4)
    old.blobs.add(shape=caffe_messages["BlobProto"]().shape).data.extend([3.0])
    old.blobs[0].shape.dim.extend([1])
    name, layers = caffe_proto.decode_net(net.SerializeToString())
    layers = sorted(layers, key=lambda layer: layer.name != "fc5")  # protobuf writes field 2 before 100
    assert name == "legacy"
    assert [(layer.name, layer.type) for layer in layers] == [("fc5", "InnerProduct"), ("conv_v1", "V1:4")]
    assert layers[0].blobs[0].shape == (1, 1, 2, 5) and np.array_equal(layers[0].blobs[0][0, 0], weights)
    assert np.array_equal(layers[0].blobs[1], [1.5, -2.0])
    assert np.array_equal(layers[1].blobs[0], [3.0])


def test_unpacked_repeated_floats_are_read():
    """proto2 writers may emit `repeated float data = 5` unpacked: one fixed32 per value."""
    values = np.array([1.0, -2.5, 3.25], np.float32)
    unpacked = b"".join(b"\x2d" + v.tobytes() for v in values)  # key (5 << 3) | 5
    shape = b"\x3a\x03\x0a\x01\x03"  # shape { dim: [3] }
    assert np.array_equal(caffe_proto.decode_blob(shape + unpacked), values)


def test_corrupt_files_are_refused(tmp_path):
    good = caffe_proto.encode_net("n", [CaffeLayer("fc5", "InnerProduct", [np.ones((2, 2), np.float32)])])
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(good[:-3])
    with pytest.raises(ProtobufError, match="cut.caffemodel is not a readable caffemodel"):
        caffe_proto.read_caffemodel(path)
    inconsistent = b"\x3a\x03\x0a\x01\x05" + b"\x2a\x04" + np.float32(1).tobytes()  # shape 5, one value
    with pytest.raises(ProtobufError, match="1 values"):
        caffe_proto.decode_blob(inconsistent)
