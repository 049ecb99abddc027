""".bin verification sets written by the test itself from real LFW crops (Python 3 pickles, a hand-made Python 2
pickle, a NumPy flag array), read back by `read_bin`; unsafe, malformed and miscounted files refused."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest

from keras_sphereface.data.bin_sets import BinError, read_bin, write_bin


@pytest.fixture(scope="module")
def crops(aligned_subset) -> list[bytes]:
    """Real LFW crops (JPEG bytes), 8 of them: 4 pairs."""
    files = sorted(aligned_subset.rglob("*.jpg"))[:8]
    assert len(files) == 8
    return [f.read_bytes() for f in files]


SAME = [True, False, True, False]


def _python2_pickle(images: list[bytes], same: list[bool]) -> bytes:
    """What Python 2's `pickle.dump((bins, issame), f, protocol=2)` writes: byte strings as BINSTRING (`str`)."""
    out = bytearray(b"\x80\x02]q\x00(")  # PROTO 2, EMPTY_LIST, BINPUT 0, MARK
    for image in images:
        out += b"U" + bytes([len(image)]) + image if len(image) < 256 else b"T" + struct.pack("<I", len(image)) + image
    out += b"e]q\x01("  # APPENDS, EMPTY_LIST, BINPUT 1, MARK
    out += b"".join(b"\x88" if flag else b"\x89" for flag in same)  # NEWTRUE / NEWFALSE
    out += b"e\x86q\x02."  # APPENDS, TUPLE2, BINPUT 2, STOP
    return bytes(out)


@pytest.mark.parametrize("kind", ["python3", "python2", "numpy_flags", "tuple_flags"])
def test_reads_the_pickles_insightface_writes(tmp_path, crops, kind):
    if kind == "python3":
        data = pickle.dumps((crops, SAME), protocol=pickle.HIGHEST_PROTOCOL)
    elif kind == "python2":
        data = _python2_pickle(crops, SAME)
        assert pickle.loads(data, encoding="bytes") == (crops, SAME)  # the hand-made pickle is a valid one
    elif kind == "numpy_flags":
        data = pickle.dumps((crops, np.array(SAME)), protocol=4)
    else:
        data = pickle.dumps((tuple(crops), tuple(SAME)), protocol=3)
    path = tmp_path / f"{kind}.bin"
    path.write_bytes(data)
    found = read_bin(path)
    assert found.images == crops and found.same.dtype == bool and found.same.tolist() == SAME
    assert found.num_pairs == 4 and found.name == kind


def test_write_bin_is_read_by_plain_pickle_as_insightface_does(tmp_path, crops):
    out = write_bin(np.array(SAME), crops, tmp_path / "set.bin")
    with open(out, "rb") as handle:
        images, same = pickle.load(handle, encoding="bytes")  # insightface's reader
    assert images == crops and same == SAME and isinstance(same[0], bool)
    assert read_bin(out).images == crops
    assert [p.name for p in tmp_path.iterdir()] == ["set.bin"]  # no temporary left


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, crops):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps((crops[:2], [_RunsCode(marker)]), protocol=4))
    with pytest.raises(BinError) as caught:
        read_bin(path)
    message = str(caught.value)
    assert str(path) in message and f"{os.system.__module__}.system" in message
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the same bytes through plain pickle do run it: the test is real
    assert marker.exists()


@pytest.mark.parametrize("payload", [
    lambda crops: pickle.dumps((crops, np.array(SAME)), protocol=5),  # NumPy's out-of-band _frombuffer
    lambda crops: pickle.dumps((crops, SAME), protocol=2),  # Python 3's protocol 2 rebuilds bytes via _codecs
    lambda crops: pickle.dumps((crops, [eval]), protocol=4),
], ids=["numpy_protocol5", "python3_protocol2", "builtin"])
def test_any_other_global_is_named(tmp_path, crops, payload):
    path = tmp_path / "other.bin"
    path.write_bytes(payload(crops))
    with pytest.raises(BinError, match=r"refused to load the global [\w.]+\.\w+"):
        read_bin(path)


def test_image_count_must_be_twice_the_pair_count(tmp_path, crops):
    path = tmp_path / "odd.bin"
    path.write_bytes(pickle.dumps((crops[:5], SAME[:3])))
    with pytest.raises(BinError, match=r"odd\.bin holds 5 images for 3 pairs; expected two images per pair \(6\)"):
        read_bin(path)
    with pytest.raises(ValueError, match="two images per pair"):
        write_bin(SAME[:3], crops[:5], tmp_path / "w.bin")
    assert not (tmp_path / "w.bin").exists()


@pytest.mark.parametrize("content, expected", [
    (b"not a pickle at all", "not a readable pickle"),
    (pickle.dumps((["x"], [True]))[:-5], "not a readable pickle"),  # truncated
    (pickle.dumps({"images": []}), "holds a dict; expected the tuple"),
    (pickle.dumps(([b"not an image", b"\xff\xd8"], [True])), "image 0 .* is neither a JPEG nor a PNG"),
    (pickle.dumps(([b"\xff\xd8", 7], [True])), "image 1 is of type int"),
    (pickle.dumps(([b"\xff\xd8", b"\xff\xd8"], ["yes"])), "pair flag 0 is 'yes'"),
], ids=["garbage", "truncated", "dict", "not_an_image", "int_image", "text_flag"])
def test_malformed_files_are_named(tmp_path, content, expected):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(BinError, match=expected) as caught:
        read_bin(path)
    assert str(path) in str(caught.value)
