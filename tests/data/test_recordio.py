"""insightface RecordIO sets written by an independent test writer from real LFW crops: framing, both layouts,
`make-tfrecords` from them, and every kind of damage refused with the file, the key or offset, and what was expected."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from keras_sphereface.data.images import decode_image_rgb
from keras_sphereface.data.recordio import RecordIOError, RecordIOReader, read_index, unpack_image_record
from keras_sphereface.data.recordio_set import open_recordio_set, read_property, read_set_image
from keras_sphereface.data.records import write_tfrecords
from keras_sphereface.utils.atomic import sha256_file
from ksf.main import cli
from tests.data.recordio_writer import RECORD_MAGIC, image_record, write_records, write_training_set

MAGIC = struct.pack("<I", RECORD_MAGIC)


def _with_magic_comment(jpeg: bytes) -> bytes:
    """The JPEG with a comment segment holding the magic number at payload offset 32 (4-aligned after the
    24-byte record header): the writer must split the record there; the image still decodes."""
    comment = b"ab" + MAGIC
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", 2 + len(comment)) + comment + jpeg[2:]


@pytest.fixture(scope="module")
def classes(aligned_subset) -> list[list[bytes]]:
    """The real LFW crops (JPEG bytes), one list per person; the first image carries the magic number."""
    people = sorted(p for p in aligned_subset.iterdir() if p.is_dir())
    found = [[f.read_bytes() for f in sorted(person.glob("*.jpg"))] for person in people]
    found[0][0] = _with_magic_comment(found[0][0])
    return found


def _examples(folder) -> list[dict]:
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
            "identity": tf.io.FixedLenFeature([], tf.string), "path": tf.io.FixedLenFeature([], tf.string),
            "height": tf.io.FixedLenFeature([], tf.int64), "width": tf.io.FixedLenFeature([], tf.int64)}
    found = []
    for record in tf.data.TFRecordDataset(sorted(str(f) for f in folder.glob("*.tfrecord"))):
        example = {k: v.numpy() for k, v in tf.io.parse_single_example(record, spec).items()}
        found.append({**example, "identity": example["identity"].decode(), "path": example["path"].decode()})
    return found


def test_framing_splits_at_the_magic_and_reads_back_by_key_and_by_scan(tmp_path):
    payloads = {
        5: b"plain record",
        9: b"abcd" + MAGIC + b"efgh" + MAGIC + b"tail!",  # two aligned magics: three parts
        2: b"ab" + MAGIC + b"cd",  # unaligned: not split
        7: MAGIC,  # the whole payload is the magic: two empty parts
    }
    offsets = write_records(tmp_path, list(payloads.items()))
    data = (tmp_path / "train.rec").read_bytes()
    flags = [struct.unpack_from("<I", data, o + 4)[0] >> 29 for o in offsets.values()]
    assert flags == [0, 1, 0, 1]
    with RecordIOReader(tmp_path / "train.rec") as reader:
        assert len(reader) == 4 and 9 in reader and 3 not in reader
        for key, payload in payloads.items():
            assert reader.read(key) == payload
        assert list(reader.scan()) == [(offsets[k], payloads[k]) for k in payloads]
        with pytest.raises(KeyError, match="has no key 3"):
            reader.read(3)


def test_image_header_with_several_labels(tmp_path):
    header, image = unpack_image_record(image_record([3.0, 7.5, 1.0], b"\xff\xd8jpeg", record_id=11))
    assert (header.flag, header.labels, header.label, header.id) == (3, (3.0, 7.5, 1.0), 3.0, 11)
    assert image == b"\xff\xd8jpeg"
    header, image = unpack_image_record(image_record(42, b"png"))
    assert (header.flag, header.label, image) == (0, 42.0, b"png")


@pytest.mark.parametrize("header", [True, False], ids=["header-record", "flat"])
def test_both_layouts_give_every_image_its_class(tmp_path, classes, header):
    write_training_set(tmp_path, classes, header=header, magic_in_id=3)
    found = open_recordio_set(tmp_path)
    assert found.layout == ("header" if header else "flat")
    first = 1 if header else 0
    count = sum(map(len, classes))
    np.testing.assert_array_equal(found.keys, np.arange(first, first + count))
    np.testing.assert_array_equal(found.labels, np.repeat(np.arange(len(classes)), [len(c) for c in classes]))
    assert found.num_classes == len(classes) and found.property == read_property(tmp_path / "property")
    images = [image for group in classes for image in group]
    with RecordIOReader(tmp_path / "train.rec") as reader:
        for key, label, image in zip(found.keys, found.labels, images, strict=True):
            assert read_set_image(reader, int(key), int(label)) == image


def test_make_tfrecords_from_a_recordio_folder(tmp_path, classes):
    write_training_set(tmp_path / "set", classes, header=True, magic_in_id=4)
    (tmp_path / "exclude.txt").write_text("1\n")
    manifest = write_tfrecords(tmp_path / "set", tmp_path / "rec", num_shards=2, val_fraction=0.25, val_shards=1,
                               min_images=3, exclude=tmp_path / "exclude.txt", seed=1)
    kept = [c for c in range(len(classes)) if c != 1 and len(classes[c]) >= 3]
    report = json.loads((tmp_path / "rec" / "report.json").read_text())
    assert report["removed_identities"]["excluded"] == ["1"]
    assert report["removed_identities"]["too_few_images"] == [str(c) for c in range(len(classes))
                                                              if c != 1 and len(classes[c]) < 3]
    labels = json.loads((tmp_path / "rec" / "labels.json").read_text())
    assert sorted(int(c["identity"]) for c in labels["classes"]) == kept and labels["num_classes"] == len(kept)
    assert manifest["settings"]["source_format"] == "recordio" and manifest["settings"]["check"] == "header"
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            assert shard["sha256"] == sha256_file(tmp_path / "rec" / shard["file"])
    examples = _examples(tmp_path / "rec")
    assert len(examples) == sum(len(classes[c]) for c in kept) == sum(s["num_examples"]
                                                                       for s in manifest["splits"].values())
    by_identity = {c["identity"]: c["label"] for c in labels["classes"]}
    starts = np.cumsum([1] + [len(c) for c in classes])
    for example in examples:
        key = int(example["path"].removeprefix("train.rec#"))
        label = int(np.searchsorted(starts, key, side="right")) - 1
        assert example["identity"] == str(label) and example["label"] == by_identity[str(label)]
        assert example["image"] == classes[label][key - starts[label]]  # the bytes as stored
        assert (example["height"], example["width"]) == decode_image_rgb(example["image"]).shape[:2]


def test_cli_make_tfrecords_detects_recordio_and_decodes_on_request(tmp_path, classes):
    write_training_set(tmp_path / "set", classes, header=False)
    result = CliRunner().invoke(cli, ["make-tfrecords", str(tmp_path / "set"), str(tmp_path / "rec"), "--shards", "2",
                                      "--check", "decode"])
    assert result.exit_code == 0, result.output
    assert f"train: {sum(map(len, classes))} examples, {len(classes)} identities" in result.output
    manifest = json.loads((tmp_path / "rec" / "manifest.json").read_text())
    assert manifest["settings"]["check"] == "decode"
    result = CliRunner().invoke(cli, ["make-tfrecords", str(tmp_path / "set"), str(tmp_path / "rec2"),
                                      "--landmarks", str(tmp_path / "set" / "property")])
    assert result.exit_code == 1 and "landmarks do not apply" in result.output


def _damage(folder, offsets, kind):
    rec, idx = folder / "train.rec", folder / "train.idx"
    data = bytearray(rec.read_bytes())
    if kind == "truncated":
        rec.write_bytes(bytes(data[:-4]))  # the last record loses its end
    elif kind == "bad magic":
        data[offsets[3]:offsets[3] + 4] = b"\0\0\0\0"
        rec.write_bytes(bytes(data))
    elif kind == "offset past end":
        idx.write_text(idx.read_text().replace(f"3\t{offsets[3]}\n", f"3\t{len(data) + 64}\n"))
    elif kind == "bad idx line":
        idx.write_text(idx.read_text().replace(f"3\t{offsets[3]}\n", "3 x\n"))
    elif kind == "bad property":
        (folder / "property").write_text("93431;112;112\n")


@pytest.mark.parametrize(("kind", "message"), [
    ("truncated", r"train\.rec: truncated record at byte offset \d+ \(key \d+\): its part holds \d+ bytes up to offset "
                  r"\d+, the file ends at \d+"),
    ("bad magic", r"train\.rec: expected the RecordIO magic 0xCED7230A at byte offset \d+ \(key 3\), found 0x00000000"),
    ("offset past end", r"train\.idx: key 3 has offset \d+, past the end of .*train\.rec \(\d+ bytes\)"),
    ("bad idx line", r"train\.idx, line 4: expected `key<TAB>offset` \(two non-negative integers\). Received: b'3 x'"),
    ("bad property", r"property: expected one line `num_classes,height,width` .* Received: '93431;112;112'"),
])
def test_damaged_sets_are_refused_naming_file_and_place(tmp_path, classes, kind, message):
    offsets = write_training_set(tmp_path, classes, header=True)
    _damage(tmp_path, offsets, kind)
    with pytest.raises(RecordIOError, match=message):
        write_tfrecords(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_label_mismatches_are_refused(tmp_path, classes):
    # An image whose own header disagrees with its identity record: found when it is written.
    records = [(0, image_record([3, 5])), (1, image_record(0, classes[0][1])), (2, image_record(7, classes[0][2])),
               (3, image_record([1, 2])), (4, image_record([2, 3]))]
    write_records(tmp_path / "a", records, "2,112,96")
    with pytest.raises(RecordIOError, match=r"train\.rec, key 2: the image record's label is 7 \(flag 0\), but the "
                                            r"set's identity records put it in class 1"):
        write_tfrecords(tmp_path / "a", tmp_path / "out")
    # A header record that is not flag 2, and labels promised by flag but absent.
    write_records(tmp_path / "b", [(0, image_record([3, 5, 1])), *records[1:]])
    with pytest.raises(RecordIOError, match=r"key 0: a header record .* must have flag 2 .* Received: flag=3"):
        open_recordio_set(tmp_path / "b")
    short = struct.pack("<IfQQ", 4, 0.0, 0, 0) + b"\0" * 8
    write_records(tmp_path / "c", [(0, image_record(0, classes[0][1])), (1, short)])
    with pytest.raises(RecordIOError, match=r"key 1: flag=4 announces 4 float32 labels \(16 bytes\) after the 24-byte "
                                            r"header, but the record holds 32 bytes"):
        open_recordio_set(tmp_path / "c")
    # An identity range that leaves an image without class; a class beyond the property's count.
    write_records(tmp_path / "d", [*records[:3], (3, image_record([1, 2])), (4, image_record([1, 2]))])
    with pytest.raises(RecordIOError, match=r"image key 1 belongs to 2 identity records"):
        open_recordio_set(tmp_path / "d")
    write_records(tmp_path / "e", [(0, image_record(5, classes[0][1]))], "3,112,96")
    with pytest.raises(RecordIOError, match=r"key 0: class 5 is not below num_classes=3 of .*property"):
        open_recordio_set(tmp_path / "e")


@pytest.mark.parametrize("text, expected", [
    (b"0\t0\n1\t40\n", [[0, 0], [1, 40]]),
    (b"0\t0\r\n1 40", [[0, 0], [1, 40]]),  # CRLF, a space, no final newline
    (b"0\t0\n\n1\t40\n\n", [[0, 0], [1, 40]]),  # blank lines (the careful parse)
    (b"5\n1\t2\t3\n", "line 1"),  # as many fields as two per line, but not two in each line
    (b"0\t0\n1\t-4\n", "line 2"),
    (b"0\t0\n1.5\t8\n", "line 2"),
])
def test_index_fast_and_careful_parses_agree(tmp_path, text, expected):
    path = tmp_path / "train.idx"
    path.write_bytes(text)
    if isinstance(expected, str):
        with pytest.raises(RecordIOError, match=expected):
            read_index(path)
    else:
        keys, offsets = read_index(path)
        assert np.stack([keys, offsets], axis=1).tolist() == expected
