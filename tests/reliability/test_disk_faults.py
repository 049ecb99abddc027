"""Disk full and read-only output during `ksf align`, `ksf make-tfrecords` and `ksf export`.

Disk full is simulated with a file-size limit (`RLIMIT_FSIZE`) on the real CLI run as a child
process: CPython ignores `SIGXFSZ`, so a write past the limit fails with `EFBIG` ("File too large")
in Python's writers and in TensorFlow's (an `OutOfRangeError` ending "; File too large"). Where a
limit cannot pick the failing write, `ENOSPC` / `EROFS` is injected in-process. Each case checks the
one-line `Error:` message (file named, cause in words), that nothing half-written is left under a
final name, that what was there before still reads back, and that running again finishes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from keras_sphereface.utils.disk import WriteError, as_write_error, describe_write_error
from ksf.main import cli
from tests.data.helpers import copy_people

REPO_ROOT = Path(__file__).resolve().parents[2]


def _ksf(args: list, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m ksf ARGS` in a child process, its files limited to `file_size_limit` bytes."""

    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "ksf", *map(str, args)], preexec_fn=limit, env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root`, hidden ones (temporaries) included."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _hidden(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob(".*")]


@pytest.fixture
def photos(lfw_dir, tmp_path) -> tuple[Path, list[str]]:
    """`(src, names)`: 3 photos each of the first 3 LFW people with at least 3 images, copied."""
    src = tmp_path / "src"
    return src, sorted(copy_people(lfw_dir, src, count=3, min_images=3, per_person=3))


# --- the message ------------------------------------------------------------------------------------


def test_write_errors_are_described_by_cause_and_file():
    path = Path("out") / "a.jpg"
    for code, words in ((errno.ENOSPC, "disk full"), (errno.EFBIG, "disk full"), (errno.EDQUOT, "disk full"),
                        (errno.EROFS, "read-only"), (errno.EACCES, "read-only")):
        text = describe_write_error(OSError(code, os.strerror(code)), path)
        assert text.startswith(f"Could not write {path}: ") and words in text
    assert as_write_error(OSError(errno.EIO, "Input/output error"), path) is None  # not a disk-full error
    assert as_write_error(ValueError("bad"), path) is None


def test_atomic_writers_name_the_target_and_keep_the_old_files(tmp_path):
    from keras_sphereface.utils.atomic import atomic_files, atomic_write

    old = tmp_path / "report.json"
    old.write_text("old")
    with pytest.raises(WriteError, match=r"report\.json: disk full \(no space") as caught, \
            atomic_write(old) as handle:
        handle.write("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert caught.value.filename == str(old) and old.read_text() == "old"
    with pytest.raises(OSError, match="Input/output") as other, atomic_write(old):
        raise OSError(errno.EIO, "Input/output error")  # not a disk-full error: passes unchanged
    assert not isinstance(other.value, WriteError)
    with pytest.raises(RuntimeError), atomic_files() as stage:
        stage(tmp_path / "a.bin").write_bytes(b"a")
        stage(old).write_text("new")
        raise RuntimeError("the third file failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"] and old.read_text() == "old"
    with atomic_files() as stage:
        stage(tmp_path / "a.bin").write_bytes(b"a")
        stage(old).write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "report.json"] and old.read_text() == "new"


@pytest.mark.tf_backend
def test_tensorflow_write_errors_are_recognised_by_their_message():
    import tensorflow as tf

    full = tf.errors.ResourceExhaustedError(None, None, "/x/.train.tmp-1; No space left on device")
    large = tf.errors.OutOfRangeError(None, None, "/x/.2.tmp-1/saved_model.pb.tmp; File too large")
    for error, code in ((full, errno.ENOSPC), (large, errno.EFBIG)):
        clear = as_write_error(error, "/x/train.tfrecord")
        assert isinstance(clear, WriteError) and clear.errno == code and clear.filename == "/x/train.tfrecord"
        assert str(clear).startswith("Could not write /x/train.tfrecord: disk full")
    assert as_write_error(tf.errors.OutOfRangeError(None, None, "End of sequence"), "/x") is None


# --- ksf align ---------------------------------------------------------------------------------------


def _reference_crops(src: Path, lfw_dir: Path, out: Path) -> dict[str, bytes]:
    from keras_sphereface.data.align_folder import align_folder

    align_folder(src, out, landmarks=lfw_dir / "landmarks.txt", progress=False)
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.jpg"))}


def _check_crops(dst: Path, reference: dict[str, bytes]) -> list[str]:
    """Every crop in `dst` is complete (the reference's bytes, decodes to 112x96); returns their names."""
    names = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.jpg"))
    for name in names:
        assert (dst / name).read_bytes() == reference[name], name
        image = cv2.imread(str(dst / name))
        assert image is not None and image.shape == (112, 96, 3), name
    return names


def test_align_disk_full_keeps_finished_crops_and_resumes(photos, lfw_dir, tmp_path):
    src, names = photos
    reference = _reference_crops(src, lfw_dir, tmp_path / "reference")
    sizes = [len(reference[n]) for n in names]
    # The first crop larger than all before it fails; those before it fit under the limit.
    first_too_large = next(i for i in range(1, len(sizes)) if sizes[i] > max(sizes[:i]))
    limit = max(sizes[:first_too_large])
    dst = tmp_path / "aligned"
    args = ["align", src, dst, "--landmarks", lfw_dir / "landmarks.txt", "--no-progress"]

    run = _ksf(args, file_size_limit=limit)
    assert run.returncode == 1, run.stderr
    message = _one_error_line(run.stderr)
    failed = names[first_too_large]
    assert message.startswith(f"Error: Could not write {dst / failed}: disk full"), message
    assert "run the same command again" in message
    written = _check_crops(dst, reference)
    assert set(names[:first_too_large]) <= set(written) and failed not in written
    assert _hidden(dst) == []  # no temporary left behind

    rerun = _ksf(args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(names) - len(written)} aligned, {len(written)} already done, 0 failed" in rerun.stdout
    assert _check_crops(dst, reference) == names


def test_align_into_a_read_only_folder_injected(photos, lfw_dir, tmp_path, monkeypatch):
    """EROFS (a folder remounted read-only midway) from the third temporary file on; works as root."""
    src, names = photos
    reference = _reference_crops(src, lfw_dir, tmp_path / "reference")
    real_mkstemp, calls = tempfile.mkstemp, []

    def read_only_after_two(*args, dir=None, **kwargs):
        calls.append(dir)
        if len(calls) > 2:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    dst = tmp_path / "aligned"
    args = ["align", str(src), str(dst), "--landmarks", str(lfw_dir / "landmarks.txt"), "--no-progress"]
    monkeypatch.setattr(tempfile, "mkstemp", read_only_after_two)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert f"Error: Could not write {dst / names[2]}: read-only file system." in result.output
    assert _check_crops(dst, reference) == names[:2] and _hidden(dst) == []

    monkeypatch.setattr(tempfile, "mkstemp", real_mkstemp)
    rerun = CliRunner().invoke(cli, args)
    assert rerun.exit_code == 0, rerun.output
    assert f"{len(names) - 2} aligned, 2 already done, 0 failed" in rerun.output
    assert _check_crops(dst, reference) == names


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores permission bits, so a chmod-read-only folder stays writable for it "
                           "(test_align_into_a_read_only_folder_injected covers root)")
def test_align_into_a_read_only_folder_chmod(photos, lfw_dir, tmp_path):
    src, names = photos
    dst = tmp_path / "aligned"
    dst.mkdir()
    args = ["align", str(src), str(dst), "--landmarks", str(lfw_dir / "landmarks.txt"), "--no-progress"]
    dst.chmod(0o555)
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        dst.chmod(0o755)
    assert result.exit_code == 1, result.output
    assert f"Error: Could not write {dst / names[0]}: the folder is read-only or not writable" in result.output
    assert list(dst.iterdir()) == []
    rerun = CliRunner().invoke(cli, args)
    assert rerun.exit_code == 0 and f"{len(names)} aligned, 0 already done" in rerun.output


# --- ksf make-tfrecords ----------------------------------------------------------------------------------


def _read_back(out: Path) -> int:
    """Examples read by `tfrecord_dataset` from `out`'s train shards, after checking the manifest's digests."""
    from keras_sphereface.data.dataset import tfrecord_dataset
    from keras_sphereface.utils.atomic import sha256_file

    manifest = json.loads((out / "manifest.json").read_text())
    for shard in manifest["splits"]["train"]["shards"]:
        assert sha256_file(out / shard["file"]) == shard["sha256"], shard["file"]
    dataset = tfrecord_dataset(str(out / "train-*.tfrecord"), batch_size=4, training=False)
    count = sum(int(labels.shape[0]) for _, labels in dataset)
    assert count == manifest["splits"]["train"]["num_examples"]
    return count


@pytest.fixture
def earlier_records(photos, tmp_path) -> tuple[Path, Path, dict[str, str]]:
    """`(src, out, digests)`: a complete earlier `make-tfrecords` output (2 shards, seed 0, 112x96)."""
    from keras_sphereface.data.records import write_tfrecords

    src, _ = photos
    out = tmp_path / "records"
    write_tfrecords(src, out, num_shards=2, seed=0, resize=(112, 96))
    return src, out, _tree(out)


@pytest.mark.tf_backend
def test_make_tfrecords_disk_full_replaces_nothing(earlier_records, tmp_path):
    from keras_sphereface.data.records import write_tfrecords

    src, out, before = earlier_records
    # A limit between the two new shards' sizes: one shard is written completely, the other fails.
    # Renaming the complete one over the earlier shard would mix two runs; nothing may be renamed.
    scratch = write_tfrecords(src, tmp_path / "scratch", num_shards=2, seed=1, resize=(112, 96))
    sizes = {s["file"]: s["bytes"] for s in scratch["splits"]["train"]["shards"]}
    assert len(set(sizes.values())) == 2
    failing = max(sizes, key=sizes.get)
    args = ["make-tfrecords", src, out, "--shards", "2", "--seed", "1", "--resize", "112x96"]

    run = _ksf(args, file_size_limit=min(sizes.values()))
    assert run.returncode == 1, run.stderr
    message = _one_error_line(run.stderr)
    assert message.startswith(f"Error: Could not write {out / failing}: disk full"), message
    assert f"Nothing in {out} was replaced" in message
    assert _tree(out) == before  # no partial file under a final name, no temporary, earlier files intact
    assert _read_back(out) == 9

    rerun = CliRunner().invoke(cli, [str(a) for a in args])
    assert rerun.exit_code == 0, rerun.output
    assert _tree(out) != before and _hidden(out) == []
    assert _read_back(out) == 9


@pytest.mark.tf_backend
def test_make_tfrecords_disk_full_at_the_manifest_replaces_nothing(earlier_records, monkeypatch):
    """ENOSPC at the last file (every shard already written): still nothing replaced."""
    from keras_sphereface.data import records

    src, out, before = earlier_records
    real_dump = json.dump

    def full_at_manifest(data, handle, **kwargs):
        if Path(handle.name).name.startswith(".manifest.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_dump(data, handle, **kwargs)

    monkeypatch.setattr(records.json, "dump", full_at_manifest)
    with pytest.raises(WriteError, match=r"Could not write .*manifest\.json: disk full \(no space left") as caught:
        records.write_tfrecords(src, out, num_shards=3, seed=1, resize=(112, 96))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(out / "manifest.json")
    assert _tree(out) == before  # the 3 new shards were complete but none replaced or added
    monkeypatch.setattr(records.json, "dump", real_dump)
    assert _read_back(out) == 9


# --- ksf export ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.tf_backend
def test_export_disk_full_leaves_no_version_and_keeps_earlier(tmp_path):
    import numpy as np
    import tensorflow as tf

    from keras_sphereface.export import export_savedmodel
    from tests.export.conftest import tiny_model

    model_file = tmp_path / "tiny.keras"
    tiny_model().save(model_file)
    root = tmp_path / "exports"
    first = export_savedmodel(str(model_file), root, warmup=False)
    assert (first.name, first.version) == ("tiny", 1)
    before = _tree(root)
    limit = (first.path / "saved_model.pb").stat().st_size // 2  # fails while TensorFlow writes saved_model.pb

    run = _ksf(["export", "--model", model_file, "--out", root, "--no-warmup"], file_size_limit=limit)
    assert run.returncode == 1, run.stderr
    message = _one_error_line(run.stderr)
    assert message.startswith(f"Error: Could not write {root / 'tiny' / '2'}: disk full"), message
    assert "No version 2 was left" in message
    assert sorted(p.name for p in (root / "tiny").iterdir()) == ["1"]  # no 2, no .2.tmp-* for a server to see
    assert _tree(root) == before  # version 1, models.config and README.md unchanged
    loaded = tf.saved_model.load(str(first.path))
    pixels = tf.constant(np.full((2, 16, 12, 3), 128.0, np.float32))
    embedding = loaded.signatures["serving_default"](images=pixels)["embedding"].numpy()
    assert embedding.shape == (2, 8) and np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
