"""`make_source`: one alignment vocabulary for every evaluation (`EVAL_ALIGN_MODES`)."""

from __future__ import annotations

import shutil

import pytest

from keras_sphereface.data.face_source import ALIGN_MODES
from keras_sphereface.evaluation import EVAL_ALIGN_MODES, EmbeddingOptions, make_source


def test_the_evaluation_modes_are_the_data_modes_plus_auto():
    assert ("auto", *ALIGN_MODES) == EVAL_ALIGN_MODES
    with pytest.raises(ValueError, match="align must be one of"):
        EmbeddingOptions(align="landmark")


def test_auto_uses_the_landmark_file_when_the_data_has_one(lfw_dir):
    source = make_source(lfw_dir)
    assert source.align == "landmarks" and source.landmarks is not None
    assert source.check_available("Aaron_Peirsol/Aaron_Peirsol_0001.jpg") is None
    assert "image file not found" in source.check_available("Nobody/Nobody_0001.jpg")


def test_auto_without_landmarks_takes_aligned_crops_and_landmarks_mode_needs_the_file(lfw_dir, tmp_path):
    person = tmp_path / "images" / "Aaron_Peirsol"
    person.mkdir(parents=True)
    shutil.copy(lfw_dir / "images" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg", person)
    assert make_source(tmp_path).align == "aligned"
    assert make_source(tmp_path, EmbeddingOptions(align="detect")).align == "detect"
    with pytest.raises(FileNotFoundError, match="align='landmarks' needs a landmark file"):
        make_source(tmp_path, EmbeddingOptions(align="landmarks"))
    given = make_source(tmp_path, landmarks=lfw_dir / "landmarks.txt")
    assert given.align == "landmarks" and "Aaron_Peirsol/Aaron_Peirsol_0001.jpg" in given.landmarks
    assert make_source(lfw_dir, EmbeddingOptions(align="aligned")).align == "aligned"
