"""`align_folder` and `ksf align` on a small real subset of LFW copied to a temporary folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from keras_sphereface.data import align
from keras_sphereface.data.align_folder import align_folder, list_images
from ksf.main import cli
from tests.data.helpers import people_with_images


@pytest.fixture()
def photo_tree(lfw_dir, tmp_path):
    """Three real identities (with their landmark lines) in tmp_path/photos."""
    src = tmp_path / "photos"
    names = []
    for person in people_with_images(lfw_dir, 3, min_images=2):
        (src / person).mkdir(parents=True)
        for path in sorted((lfw_dir / "images" / person).glob("*.jpg"))[:3]:
            shutil.copy(path, src / person / path.name)
            names.append(f"{person}/{path.name}")
    all_points = align.read_landmarks(lfw_dir / "landmarks.txt")
    lines = [f"{n}\t" + " ".join(f"{v:.1f}" for v in all_points[n].ravel()) for n in names]
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")
    return src, tmp_path / "landmarks.txt", names


def test_aligns_a_tree_and_keeps_its_structure(photo_tree, tmp_path):
    src, landmark_file, names = photo_tree
    report = align_folder(src, tmp_path / "out", landmarks=landmark_file, workers=2, progress=False)
    assert (report.total, report.aligned, report.skipped_existing, report.failures) == (len(names), len(names),
                                                                                      0, [])
    assert list_images(tmp_path / "out") == names
    points = align.read_landmarks(landmark_file)
    for name in names:
        crop = align.load_image_rgb(tmp_path / "out" / name)
        expected = align.align_face(align.load_image_rgb(src / name), points[name])
        assert crop.shape == (112, 96, 3)
        assert np.abs(crop.astype(int) - expected.astype(int)).mean() < 2.0  # JPEG quality 95
    on_disk = json.loads((tmp_path / "out" / "align_report.json").read_text())
    assert on_disk["aligned"] == len(names) and on_disk["settings"]["template"] == "sphereface"


def test_resumes_and_reports_bad_images(photo_tree, tmp_path):
    src, landmark_file, names = photo_tree
    out = tmp_path / "out"
    align_folder(src, out, landmarks=landmark_file, progress=False)
    # An interrupted run leaves a temporary behind and one crop missing.
    (out / names[0]).unlink()
    stale = out / names[1].split("/")[0] / ".x.jpg.tmp-abc.jpg"
    stale.write_bytes(b"half")
    # A corrupt photo and one without landmarks appear.
    person = names[0].split("/")[0]
    (src / person / "corrupt.jpg").write_bytes((src / names[0]).read_bytes()[:500])
    shutil.copy(src / names[0], src / person / "unlisted.jpg")

    report = align_folder(src, out, landmarks=landmark_file, size="112x96", progress=False)
    assert report.aligned == 1 and report.skipped_existing == len(names) - 1
    assert not stale.exists()
    reasons = {f["path"]: f["reason"] for f in report.failures}
    assert reasons == {f"{person}/corrupt.jpg": "unreadable", f"{person}/unlisted.jpg": "no_landmarks"}
    assert "truncated or corrupt JPEG" in next(f["error"] for f in report.failures if "corrupt" in f["path"])
    assert not (out / person / "corrupt.jpg").exists()
    written = json.loads((out / "align_report.json").read_text())
    assert written["failure_counts"] == {"unreadable": 1, "no_landmarks": 1}


def test_bad_arguments(photo_tree, tmp_path):
    src, landmark_file, _ = photo_tree
    with pytest.raises(ValueError, match="exactly one landmark source"):
        align_folder(src, tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="Unknown alignment template"):
        align_folder(src, tmp_path / "o", landmarks=landmark_file, template="dlib", progress=False)
    with pytest.raises(ValueError, match="size must look like HxW"):
        align_folder(src, tmp_path / "o", landmarks=landmark_file, size="112by96", progress=False)
    with pytest.raises(FileNotFoundError, match="Source folder not found"):
        align_folder(tmp_path / "nowhere", tmp_path / "o", landmarks=landmark_file)
    with pytest.raises(ValueError, match="must be relative to the source folder"):
        align_folder(src.parent, tmp_path / "o", landmarks=landmark_file, progress=False)


def test_cli_align_strict_and_options(photo_tree, tmp_path):
    src, landmark_file, names = photo_tree
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["align", str(src), str(out), "--landmarks", str(landmark_file), "--template", "arcface",
            "--size", "112x112", "--workers", "2", "--no-progress", "--strict"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"{len(names)} aligned" in result.output
    assert align.load_image_rgb(out / names[0]).shape == (112, 112, 3)

    (src / "Empty_Person").mkdir()
    (src / names[0].split("/")[0] / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    assert runner.invoke(cli, args[:-1]).exit_code == 0  # failures are reported, not fatal...
    result = runner.invoke(cli, args)
    assert result.exit_code == 1  # ...unless --strict
    assert "1 failed" in result.output

    result = runner.invoke(cli, ["align", str(src), str(out), "--landmarks", str(landmark_file), "--detect"])
    assert result.exit_code == 2 and "exactly one of --landmarks FILE or --detect" in result.output


@pytest.mark.slow
def test_detector_finds_the_landmarks_and_records_choices(lfw_dir, tmp_path):
    pytest.importorskip("mtcnn")
    from keras_sphereface.data.detect import FaceDetector

    detector = FaceDetector()
    points = align.read_landmarks(lfw_dir / "landmarks.txt")
    name = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
    image = align.load_image_rgb(lfw_dir / "images" / name)
    found, record = detector.landmarks(image)
    assert record["faces"] >= 1
    # The shared landmarks came from MTCNN too: same points within a few pixels.
    assert np.abs(found - points[name]).max() < 4.0

    src = tmp_path / "photos" / "group"
    src.mkdir(parents=True)
    other = align.load_image_rgb(lfw_dir / "images" / "Aaron_Guiel" / "Aaron_Guiel_0001.jpg")
    small = other[::2, ::2]
    canvas = np.full((image.shape[0], image.shape[1] + small.shape[1], 3), 128, np.uint8)
    canvas[:, : image.shape[1]] = image
    canvas[: small.shape[0], image.shape[1]:] = small
    import cv2

    cv2.imwrite(str(src / "two.png"), canvas[..., ::-1])
    cv2.imwrite(str(src / "blank.png"), np.full((120, 120, 3), 128, np.uint8))
    report = align_folder(src.parent, tmp_path / "out", detect=True, detector=detector, progress=False)
    assert report.aligned == 1
    assert [f["reason"] for f in report.failures] == ["no_face"]
    choice = report.detections["group/two.png"]
    assert choice["faces"] >= 2 and "rule" in choice
    chosen_box = choice["detections"][choice["chosen"]]["box"]
    assert chosen_box[2] <= image.shape[1] + 2  # the large face on the left, not the small one
