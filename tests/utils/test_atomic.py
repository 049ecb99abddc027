"""Atomic writes: the target appears complete or not at all, and an old file survives a failure."""

from __future__ import annotations

import os
import stat

import pytest

from keras_sphereface.utils import atomic_path, atomic_write, sha256_file


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary left
    with atomic_write(target) as handle:
        handle.write("new")
    assert target.read_text() == "new"


def test_atomic_file_gets_umask_permissions(tmp_path):
    with atomic_write(tmp_path / "a.txt") as handle:
        handle.write("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_atomic_path_keeps_suffix_and_replaces_directories(tmp_path):
    with atomic_path(tmp_path / "model.weights.h5") as tmp:
        assert tmp.name.endswith(".weights.h5") and tmp.parent == tmp_path
        tmp.write_bytes(b"abc")
    assert (tmp_path / "model.weights.h5").read_bytes() == b"abc"

    export = tmp_path / "export"
    export.mkdir()
    (export / "old.pb").write_text("old")
    with pytest.raises(ValueError), atomic_path(export, directory=True) as tmp:
        (tmp / "saved_model.pb").write_text("partial")
        raise ValueError("export failed")
    assert sorted(p.name for p in export.iterdir()) == ["old.pb"]
    with atomic_path(export, directory=True) as tmp:
        (tmp / "saved_model.pb").write_text("new")
    assert sorted(p.name for p in export.iterdir()) == ["saved_model.pb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "model.weights.h5"]


def test_sha256_file(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"keras_sphereface")
    import hashlib

    assert sha256_file(path) == hashlib.sha256(b"keras_sphereface").hexdigest()


def test_atomic_write_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="Received: mode='a'"), atomic_write(tmp_path / "x", mode="a"):
        pass
