"""Image sources assembled from symbolic links, link loops, and source folders with no image.

`ksf align` and `ksf make-tfrecords` must see the same images in a tree of symlinked identity
folders (a common way to build a subset), must end on link loops, and must refuse a source with
no image with a message saying where they looked (non-zero exit), never report `0 of 0` as done.
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from keras_sphereface.data.align_folder import align_folder, list_images
from keras_sphereface.data.records import write_tfrecords
from keras_sphereface.data.sources import images_from_folder
from ksf.main import cli

from .conftest import first_people


@pytest.fixture
def linked_subset(lfw_dir, tmp_path):
    """`(src, names)`: a folder whose identity folders are symbolic links into the real LFW images."""
    src = tmp_path / "subset"
    src.mkdir()
    names = []
    for person in first_people(lfw_dir, 3):
        (src / person).symlink_to(lfw_dir / "images" / person, target_is_directory=True)
        names += [f"{person}/{p.name}" for p in sorted((lfw_dir / "images" / person).glob("*.jpg"))]
    return src, sorted(names)


def test_align_follows_symlinked_identity_folders(linked_subset, lfw_dir, tmp_path):
    src, names = linked_subset
    assert list_images(src) == names
    result = CliRunner().invoke(cli, ["align", str(src), str(tmp_path / "out"), "--landmarks",
                                      str(lfw_dir / "landmarks.txt"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"{len(names)} aligned, 0 already done, 0 failed of {len(names)}" in result.output
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.jpg"))
    assert written == names
    assert all(not (tmp_path / "out" / n).is_symlink() for n in names)  # crops are real files
    report = json.loads((tmp_path / "out" / "align_report.json").read_text())
    assert report["total"] == report["aligned"] == len(names) and report["failed"] == 0


def test_make_tfrecords_sees_the_same_images_as_align(linked_subset, tmp_path):
    src, names = linked_subset
    keys = sorted(image.key for image in images_from_folder(src))
    assert keys == names == list_images(src)
    manifest = write_tfrecords(src, tmp_path / "rec", num_shards=1)
    assert manifest["splits"]["train"]["num_examples"] == len(names)


def test_link_loops_end_and_count_each_image_once(lfw_dir, tmp_path):
    person = first_people(lfw_dir, 1)[0]
    photos = sorted((lfw_dir / "images" / person).glob("*.jpg"))
    src = tmp_path / "src"
    folder = src / person / "nested"
    folder.mkdir(parents=True)
    for photo in photos:  # image files that are themselves links
        (src / person / photo.name).symlink_to(photo)
    (folder / "up").symlink_to("..", target_is_directory=True)  # person/nested/up -> person: a loop
    (folder / "self").symlink_to(".", target_is_directory=True)
    (src / person / "root").symlink_to(src, target_is_directory=True)  # back to the top
    (src / "Other").symlink_to(src / person, target_is_directory=True)  # a second link to one folder
    found = list_images(src)
    assert found == sorted(f"{person}/{p.name}" for p in photos)
    report = align_folder(src, tmp_path / "out", landmarks=_points_for(lfw_dir, person, photos), progress=False)
    assert report.aligned == len(photos) and not report.failures
    # make-tfrecords: an identity that is the same folder as another would give its images two labels
    with pytest.raises(ValueError, match=r"Identity folders '.*' and 'Other' of .* are the same folder"):
        images_from_folder(src)
    (src / "Other").unlink()
    (src / "Loop").symlink_to(src, target_is_directory=True)
    with pytest.raises(ValueError, match=r"Identity folder .*Loop is a link to .*source folder itself"):
        images_from_folder(src)


def _points_for(lfw_dir, person, photos):
    from keras_sphereface.data.landmarks import read_landmarks

    points = read_landmarks(lfw_dir / "landmarks.txt")
    return {f"{person}/{p.name}": points[f"{person}/{p.name}"] for p in photos}


@pytest.mark.parametrize("content", ["empty", "no_images", "hidden_only", "broken_link"])
def test_align_refuses_a_source_without_images(lfw_dir, tmp_path, content):
    src = tmp_path / "src"
    (src / "Someone").mkdir(parents=True)
    photo = sorted((lfw_dir / "images").glob("*/*_0001.jpg"))[0]
    if content == "no_images":
        (src / "Someone" / "notes.txt").write_text("not an image\n")
        (src / "Someone" / "photo.gif").write_bytes(b"GIF89a")
    elif content == "hidden_only":
        (src / ".cache").mkdir()
        os.symlink(photo, src / ".cache" / "a.jpg")
        os.symlink(photo, src / "Someone" / ".b.jpg")
    elif content == "broken_link":
        (src / "Gone").symlink_to(tmp_path / "missing", target_is_directory=True)
    with pytest.raises(ValueError, match=rf"No image found under {src}: searched every folder below it, "
                                         r"following symbolic links, for files ending in jpeg, jpg, png"):
        align_folder(src, tmp_path / "out", landmarks={}, progress=False)
    result = CliRunner().invoke(cli, ["align", str(src), str(tmp_path / "out"), "--landmarks",
                                      str(lfw_dir / "landmarks.txt"), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert f"Error: No image found under {src}" in result.output
    assert "0 aligned" not in result.output and not (tmp_path / "out" / "align_report.json").exists()


def test_relative_source_names_the_absolute_folder(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rf"No image found under empty \({tmp_path / 'empty'}\)"):
        align_folder("empty", "out", landmarks={}, progress=False)


def test_make_tfrecords_refuses_a_source_without_images(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    result = CliRunner().invoke(cli, ["make-tfrecords", str(src), str(tmp_path / "rec")])
    assert result.exit_code == 1
    assert f"No identity folder with images under {src}" in result.output
    assert not (tmp_path / "rec").exists()
    (src / "Someone").mkdir()
    result = CliRunner().invoke(cli, ["make-tfrecords", str(src), str(tmp_path / "rec")])
    assert result.exit_code == 1 and f"Identity folder {src / 'Someone'} holds no JPEG or PNG image" in result.output

