"""Landmark files and pair lists with bad lines, bad bytes, missing images and unknown people.

Every error names the file and the line (1-based, as an editor counts lines) and says what was
expected; a pair list naming missing images fails before any model is loaded, or, with
`skip_missing`, the pairs are skipped and counted (tests/evaluation/test_cli.py checks the count).
"""

from __future__ import annotations

import pytest

from keras_sphereface.data.landmarks import read_landmarks
from keras_sphereface.evaluation import evaluate_pairs
from keras_sphereface.evaluation.pairs import read_pairs

GOOD = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg\t1 2 3 4 5 6 7 8 9 10"


@pytest.mark.parametrize(("line", "expected"), [
    ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg\t1 2 3 4 5 6 7 8 9", r"line 3: expected an image path and 10 numbers "
                                                                  r"\(x1 y1 \.\.\. x5 y5\), found 10 column\(s\)"),
    ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg\t1 2 3 4 5 6 7 8 9 10 11", r"line 3: expected .*found 12 column\(s\)"),
    ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", r"line 3: expected .*found 1 column\(s\)"),
    ("\t1 2 3 4 5 6 7 8 9 10", r"line 3: expected .*found 11 column\(s\)"),
    ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg\t1 2 3 4 5 6 7 8 9 1e999", r"line 3: expected .*non-finite"),
])
def test_landmark_lines_with_missing_or_extra_columns(tmp_path, line, expected):
    path = tmp_path / "landmarks.txt"
    path.write_text(f"# comment\n{GOOD}\n{line}\n")
    with pytest.raises(ValueError, match=expected) as info:
        read_landmarks(path)
    assert str(path) in str(info.value) and "Received: line=" in str(info.value)


def test_landmark_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "landmarks.txt"
    path.write_bytes(f"{GOOD}\n".encode() + b"Jos\xe9_Maria/Jos\xe9_Maria_0001.jpg\t1 2 3 4 5 6 7 8 9 10\n")
    with pytest.raises(ValueError, match=rf"{path}, line 2: expected UTF-8 text, found byte 0xe9 at column 4"):
        read_landmarks(path)


def test_landmark_file_with_bom_crlf_and_form_feed_counts_lines_like_an_editor(tmp_path):
    path = tmp_path / "landmarks.txt"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n\x0c\r\nbad line\r\n")
    with pytest.raises(ValueError, match=r"line 3: expected an image path"):
        read_landmarks(path)
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n")
    assert list(read_landmarks(path)) == ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg"]


def test_real_landmark_file_still_reads(lfw_dir, lfw_points):
    assert len(lfw_points) == len((lfw_dir / "landmarks.txt").read_bytes().strip().split(b"\n"))


def _lfw_lines(lfw_dir, per_class: int = 5) -> list[str]:
    lines = (lfw_dir / "pairs.txt").read_text().splitlines()[1:]
    return lines[:per_class] + lines[300:300 + per_class]


@pytest.mark.parametrize(("change", "expected"), [
    (("Nobody_Here\t1\t2", 2), r"pairs.txt, line 4: image file not found: .*Nobody_Here/Nobody_Here_0001.jpg"),
    (("Aaron_Peirsol\t1\t99", 4), r"pairs.txt, line 6: image file not found: .*Aaron_Peirsol_0099.jpg"),
    (("Aaron_Peirsol\t1\tNot_A_Person\t1", 9), r"pairs.txt, line 11: image file not found: .*Not_A_Person_0001"),
])
def test_lfw_pairs_with_unknown_people_or_images_fail_before_the_model_loads(lfw_dir, tmp_path, change,
                                                                             expected):
    lines = _lfw_lines(lfw_dir)
    text, index = change
    lines[index] = text
    path = tmp_path / "pairs.txt"
    path.write_text("1\t5\n" + "\n".join(lines) + "\n")
    with pytest.raises(FileNotFoundError, match=expected) as info:
        evaluate_pairs(path, "no-such-model-is-needed", lfw_dir / "images", landmarks=lfw_dir / "landmarks.txt",
                       num_folds=2)
    assert "--skip-missing" in str(info.value)


def test_generic_pairs_naming_missing_files(lfw_dir, tmp_path):
    lines = []
    for index, line in enumerate(_lfw_lines(lfw_dir)):
        f = line.split("\t")
        left = f"{f[0]}/{f[0]}_{int(f[1]):04d}.jpg"
        right = f"{f[0]}/{f[0]}_{int(f[2]):04d}.jpg" if len(f) == 3 else f"{f[2]}/{f[2]}_{int(f[3]):04d}.jpg"
        lines.append(f"{left} {right} {int(len(f) == 3)} {index % 2}")
    lines[6] = lines[6].split()[0] + " somewhere/else.png 0 0"
    path = tmp_path / "list.txt"
    path.write_text("# path1 path2 same fold\n" + "\n".join(lines) + "\n")
    with pytest.raises(FileNotFoundError, match=r"list.txt, line 8: image file not found: .*somewhere/else.png"):
        evaluate_pairs(path, "unused", lfw_dir / "images", landmarks=lfw_dir / "landmarks.txt")


@pytest.mark.parametrize(("text", "expected"), [
    ("-1\t5\n", r"pairs.txt, line 1: the numbers of an LFW header must be positive"),
    ("1\t1\nA\t0\t1\nA\t1\tB\t1\n", r"pairs.txt, line 2: LFW image numbers start at 1"),
    ("a.jpg b.jpg 1 99999999999999999999\n", r"pairs.txt, line 1: the fold '9+' is out of range"),
    ("a.jpg b.jpg 1\nc.jpg d.jpg 0\n", r"pairs.txt: Too few same pairs for 10 folds"),
    ("2\t1\nA\t1\t2\n", r"pairs.txt: the header promises 2 folds x 2 x 1 pairs = 4 pairs, the file has 1"),
])
def test_bad_pair_lists_name_file_and_line(tmp_path, text, expected):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=expected):
        read_pairs(path)


def test_pair_list_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_bytes(b"1\t1\nA\t1\t2\nJos\xe9\t1\tB\t1\n")
    with pytest.raises(ValueError, match=r"pairs.txt, line 3: expected UTF-8 text, found byte 0xe9"):
        read_pairs(path)
