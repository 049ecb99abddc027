"""Small real training data: TFRecords of a few LFW identities (original photos + landmarks), built once."""

from __future__ import annotations

import pytest

from keras_sphereface.data.align import read_landmarks
from keras_sphereface.data.records import write_tfrecords
from tests.data.helpers import copy_people

NUM_PEOPLE = 8
IMAGES_PER_PERSON = 6
#: Options every training test shares: Sphere-4 at 32x32 with 32-d embeddings, aligned on the fly.
TINY = {"model": "sphere4", "input_size": [32, 32], "embedding_dim": 32, "align": "landmarks", "batch_size": 8,
        "shuffle_buffer": 64, "log_every": 1, "progress": False, "seed": 7}


@pytest.fixture(scope="session")
def lfw_records(lfw_dir, tmp_path_factory):
    """`train-*.tfrecord` glob of 8 LFW identities x up to 6 photos (150x150 with landmarks), 2 shards."""
    root = tmp_path_factory.mktemp("train_records")
    photos = root / "photos"
    names = copy_people(lfw_dir, photos, NUM_PEOPLE, min_images=4, per_person=IMAGES_PER_PERSON)
    points = read_landmarks(lfw_dir / "landmarks.txt")
    write_tfrecords(photos, root / "records", num_shards=2, landmarks={n: points[n] for n in names}, workers=1)
    return str(root / "records" / "train-*.tfrecord")


@pytest.fixture()
def tiny(lfw_records, tmp_path):
    """A function `tiny(**overrides) -> TrainConfig` over the lfw-devtrain recipe with the TINY options."""
    from keras_sphereface.training import load_recipe

    def make(**overrides):
        options = {**TINY, "tfrecords": lfw_records, "out": str(tmp_path / "run"), **overrides}
        return load_recipe("lfw-devtrain_sphere4_asoftmax", **options)

    return make
