"""Pair list parsing: LFW View 1 / View 2 files, the generic format, and line-numbered errors."""

from __future__ import annotations

import numpy as np
import pytest

from keras_sphereface.evaluation.pairs import parse_pairs, read_pairs, stratified_folds


def test_real_lfw_view2_pairs(lfw_dir):
    pairs = read_pairs(lfw_dir / "pairs.txt")
    assert len(pairs) == 6000 and pairs.num_folds == 10 and pairs.has_folds
    assert pairs.same.sum() == 3000
    # Each fold: 300 same then 300 different, in file order.
    first = pairs.folds == 0
    assert pairs.same[first].tolist() == [True] * 300 + [False] * 300
    text_lines = (lfw_dir / "pairs.txt").read_text().splitlines()
    name, n1, n2 = text_lines[pairs.lines[0] - 1].split()
    assert pairs.left[0] == f"{name}/{name}_{int(n1):04d}.jpg"
    assert pairs.right[0] == f"{name}/{name}_{int(n2):04d}.jpg"
    name1, m1, name2, m2 = text_lines[pairs.lines[300] - 1].split()
    assert pairs.left[300] == f"{name1}/{name1}_{int(m1):04d}.jpg"
    assert pairs.right[300] == f"{name2}/{name2}_{int(m2):04d}.jpg"
    for path in pairs.image_paths()[:50]:
        assert (lfw_dir / "images" / path).is_file(), path


def test_real_lfw_view1_pairs_get_stratified_folds(lfw_dir):
    pairs = read_pairs(lfw_dir / "pairsDevTest.txt")
    assert len(pairs) == 1000 and not pairs.has_folds
    for fold in range(10):
        members = pairs.same[pairs.folds == fold]
        assert members.sum() == 50 and (~members).sum() == 50


def test_generic_format_with_folds_comments_and_labels():
    text = "# my pairs\n\na/1.jpg b/2.jpg 1 7\na/1.jpg c/3.jpg false 7\nx.png y.png same 9\nx.png z.png -1 9\n"
    pairs = parse_pairs(text, source="mine.txt")
    assert pairs.has_folds and pairs.folds.tolist() == [0, 0, 1, 1]
    assert pairs.same.tolist() == [True, False, True, False]
    assert pairs.lines.tolist() == [3, 4, 5, 6]
    assert pairs.image_paths() == ["a/1.jpg", "b/2.jpg", "c/3.jpg", "x.png", "y.png", "z.png"]


def test_stratified_folds_cut_each_class_in_order():
    same = np.array([True] * 20 + [False] * 20)
    folds = stratified_folds(same, 10)
    assert folds[:20].tolist() == np.repeat(np.arange(10), 2).tolist()
    assert folds[20:].tolist() == np.repeat(np.arange(10), 2).tolist()
    with pytest.raises(ValueError, match="Too few same pairs"):
        stratified_folds(np.array([True] * 3 + [False] * 30), 10)


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("2 1\nA 1 2\nA 1 B 2\nC 1 2\nC 1 D x\n", 5, "LFW format"),
        ("1\nA 1 2\nA 1 B\n", 3, "LFW format"),
        ("a.jpg b.jpg 1\nc.jpg d.jpg maybe\n", 2, "label 'maybe'"),
        ("a.jpg b.jpg 1 0\nc.jpg d.jpg 0 zero\n", 2, "fold 'zero'"),
        ("a.jpg b.jpg 1\nc.jpg\n", 2, "path1 path2 same"),
        ("2 1\nA 1 2\nA 1 B 2\nC 1 D 2\nC 1 2\n", 4, "expected a same pair"),
    ],
)
def test_malformed_line_is_named(text, line, fragment):
    with pytest.raises(ValueError, match=rf"bad\.txt, line {line}: .*{fragment}") as info:
        parse_pairs(text, source="bad.txt")
    assert "Received: line=" in str(info.value)


def test_header_count_mismatch_and_single_class():
    with pytest.raises(ValueError, match="promises 2 folds x 2 x 1 pairs = 4 pairs, the file has 2"):
        parse_pairs("2 1\nA 1 2\nA 1 B 2\n", source="short.txt")
    with pytest.raises(ValueError, match="both same and different"):
        parse_pairs("a b 1 0\nc d 1 1\n", source="same.txt")
    with pytest.raises(ValueError, match="no pairs"):
        parse_pairs("# nothing\n\n", source="empty.txt")
    with pytest.raises(ValueError, match="every line has a fold column or none"):
        parse_pairs("a b 1 0\nc d 0\n", source="mixed.txt")
    with pytest.raises(FileNotFoundError, match="Pair list not found"):
        read_pairs("/nonexistent/pairs.txt")
