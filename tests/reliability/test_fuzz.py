"""Fuzzing the readers of untrusted files with mutated bytes of small real, valid files.

Each reader has one documented error type for bad bytes, and nothing else may come out of it
(no IndexError, KeyError, struct.error, UnicodeDecodeError, MemoryError, hang):

| reader | error for bad bytes |
|---|---|
| `caffe_proto.decode_net` / `read_caffemodel` | `ProtobufError` (a `ValueError`; byte offset, and file) |
| `torch_npz.read_npz` (the npz path of `load_torch_npz`) | `NpzError` (a `ValueError`; file, array, offset) |
| `landmarks.read_landmarks` | `ValueError` naming the file and line |
| `pairs.read_pairs` | `ValueError` naming the file (and the line, for a bad line) |

Mutations (hypothesis): bit flips, byte overwrites, truncations, insertions of random or
"interesting" bytes (0x00, 0xff, 0x80, huge varints) and deletions, up to 4 per example. The
examples are derandomized (the same each run) and bounded: `KSF_FUZZ_EXAMPLES` (default 300 per
reader) and a per-example alarm of 5 seconds catch a hang. `KSF_FUZZ_RANDOM=1` explores new
examples instead (e.g. `KSF_FUZZ_EXAMPLES=5000 KSF_FUZZ_RANDOM=1 pytest tests/reliability/test_fuzz.py`).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from keras_sphereface.data.landmarks import read_landmarks  # noqa: E402
from keras_sphereface.evaluation.pairs import read_pairs  # noqa: E402
from keras_sphereface.models.convert import caffe_proto  # noqa: E402
from keras_sphereface.models.convert.caffe_proto import CaffeLayer, ProtobufError  # noqa: E402
from keras_sphereface.models.convert.torch_npz import NpzError, read_npz  # noqa: E402

EXAMPLES = int(os.environ.get("KSF_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=2000,
    derandomize=os.environ.get("KSF_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
INTERESTING = [b"\x00", b"\xff", b"\x80", b"\x7f", b"\xff" * 9 + b"\x01", b"\x80" * 10, b"\xc3\x28",
               b"\n", b"\t", b"\r", b"#", b"-", b"nan", b"1e999", b"PK\x03\x04", b"\x93NUMPY"]


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raises TimeoutError in the main thread when the body runs longer than `seconds` (a hang)."""

    def expire(signum, frame):
        raise TimeoutError(f"a reader ran longer than {seconds} s: hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    """`seed` with 1 to 4 mutations: bit flip, overwrite, truncation, insertion, deletion."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            chunk = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=16)))
            data[position:position] = chunk
        elif kind == "delete":
            del data[position:position + draw(st.integers(1, 16))]
    return bytes(data)


# --- seeds: small valid files ------------------------------------------------------------------------


def _caffemodel_seed() -> bytes:
    rng = np.random.default_rng(0)
    layers = [CaffeLayer("conv1_1", "Convolution", [rng.normal(size=(2, 3, 3, 3)).astype(np.float32),
                                                    np.zeros(2, np.float32)]),
              CaffeLayer("relu1_1", "PReLU", [np.full(2, 0.25, np.float32)]),
              CaffeLayer("fc5", "InnerProduct", [rng.normal(size=(4, 8)).astype(np.float32)])]
    legacy_blob = b"\x08\x01\x10\x01\x18\x01\x20\x02" + b"\x2a\x08" + np.float32([1.5, -2.0]).tobytes()
    legacy_layer = b"\x22\x02v1" + b"\x28\x04" + b"\x32" + bytes([len(legacy_blob)]) + legacy_blob
    return caffe_proto.encode_net("sphere", layers) + b"\x12" + bytes([len(legacy_layer)]) + legacy_layer


def _npz_seed(compressed: bool) -> bytes:
    rng = np.random.default_rng(1)
    state = {"conv1.conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
             "conv1.bn.running_var": np.ones(4, np.float32),
             "conv1.bn.num_batches_tracked": np.array(7, np.int64),
             "linear.weight": np.asfortranarray(rng.normal(size=(3, 5)))}
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **state)
    return buffer.getvalue()


CAFFE_SEED = _caffemodel_seed()
NPZ_SEED = _npz_seed(False)
NPZ_COMPRESSED_SEED = _npz_seed(True)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder for the files the readers open (one per reader, rewritten for every example)."""
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def landmark_seed(lfw_dir) -> bytes:
    """The first 12 lines of the real LFW landmark file, and a comment and a blank line."""
    lines = (lfw_dir / "landmarks.txt").read_bytes().split(b"\n")[:12]
    return b"# five points per image\n" + b"\n".join(lines[:6]) + b"\n\n" + b"\n".join(lines[6:]) + b"\n"


@pytest.fixture(scope="module")
def pairs_seeds(lfw_dir) -> list[bytes]:
    """Real LFW View 2 lines: 2 folds x 3 same + 3 different (LFW format), and the generic format."""
    lines = (lfw_dir / "pairs.txt").read_bytes().split(b"\n")[1:]
    chosen = []
    for fold in range(2):
        block = lines[fold * 600:(fold + 1) * 600]
        chosen += block[:3] + block[300:303]
    lfw = b"2\t3\n" + b"\n".join(chosen) + b"\n"
    generic = []
    for index, line in enumerate(chosen):
        fields = line.decode().split("\t")
        people = (fields[0], fields[0]) if len(fields) == 3 else (fields[0], fields[2])
        numbers = (fields[1], fields[2]) if len(fields) == 3 else (fields[1], fields[3])
        left, right = (f"{p}/{p}_{int(n):04d}.jpg" for p, n in zip(people, numbers, strict=True))
        generic.append(f"{left} {right} {int(len(fields) == 3)} {index // 6}")
    return [lfw, ("# path1 path2 same fold\n" + "\n".join(generic) + "\n").encode()]


def test_seeds_are_valid(scratch, landmark_seed, pairs_seeds):
    name, layers = caffe_proto.decode_net(CAFFE_SEED)
    assert name == "sphere" and [layer.name for layer in layers] == ["conv1_1", "relu1_1", "fc5", "v1"]
    for seed in (NPZ_SEED, NPZ_COMPRESSED_SEED):
        path = scratch / "seed.npz"
        path.write_bytes(seed)
        arrays = read_npz(path)
        assert arrays["linear.weight"].shape == (3, 5) and arrays["conv1.bn.num_batches_tracked"] == 7
    path = scratch / "landmarks.txt"
    path.write_bytes(landmark_seed)
    assert len(read_landmarks(path)) == 12
    for seed in pairs_seeds:
        path = scratch / "pairs.txt"
        path.write_bytes(seed)
        assert len(read_pairs(path)) == 12


# --- the fuzz tests ------------------------------------------------------------------------------------


@FUZZ
@given(data=mutated(CAFFE_SEED))
def test_fuzz_caffemodel_reader(data):
    with _time_limit(5):
        try:
            caffe_proto.decode_net(data)
        except ProtobufError as error:
            assert "byte offset" in str(error) or "Blob data" in str(error)


@FUZZ
@given(data=st.one_of(mutated(NPZ_SEED), mutated(NPZ_COMPRESSED_SEED)))
def test_fuzz_npz_reader(scratch, data):
    path = scratch / "weights.npz"
    path.write_bytes(data)
    with _time_limit(5):
        try:
            read_npz(path, max_bytes=1 << 20)
        except NpzError as error:
            assert str(path) in str(error)


@FUZZ
@given(data=st.data())
def test_fuzz_landmark_parser(scratch, landmark_seed, data):
    path = scratch / "landmarks.txt"
    path.write_bytes(data.draw(mutated(landmark_seed)))
    with _time_limit(5):
        try:
            read_landmarks(path)
        except ValueError as error:
            assert type(error) is ValueError, type(error)
            assert f"{path}, line " in str(error)


@FUZZ
@given(data=st.data())
def test_fuzz_pair_list_parser(scratch, pairs_seeds, data):
    path = scratch / "pairs.txt"
    path.write_bytes(data.draw(mutated(data.draw(st.sampled_from(pairs_seeds)))))
    with _time_limit(5):
        try:
            read_pairs(path)
        except ValueError as error:
            assert type(error) is ValueError, type(error)
            assert "pairs.txt" in str(error)
