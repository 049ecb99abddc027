"""keras_sphereface.training: `train(config)` behind `ksf train`, its config and recipes (TensorFlow).

- `TrainConfig`: every option (the fields are the documented options of `ksf train`).
- `load_recipe(name_or_file, **overrides)`: a TOML recipe (`RECIPE_NAMES`, or a file such as a
  run's own `config.toml`) over the base config, with overrides.
- `train(config) -> TrainResult`: custom loop under `tf.distribute`, exact resume from
  `tf.train.CheckpointManager` checkpoints, mixed precision, validation on a pair list.
- `HEAD_NAMES` / `make_head`: the margin heads by their `--head` names.
- `TrainCallback`: named hooks into a run (pass start, batches, step end, log, checkpoint, validate).

The floor, bottom to top (docs/architecture.md): `config` (options, recipes) and `distribute`
(strategy, chief); `schedule` (learning rate), `heads` (head names, lambda); `inputs` (records,
worker shards, one seeded pass per epoch); `step` (optimizer, decay, loss scaling, the
distributed step); `backbone` (the float32 copy); `checkpoints` (keys, completeness, saving,
per-worker input positions); `state` (build and restore); `logs` (TensorBoard, CSV, console);
`signals`; `outputs` (config.toml, final model, tag); `callbacks`; `loop` (the driver, `train`).

    >>> config = load_recipe("lfw-devtrain_sphere4_asoftmax", tfrecords="out/lfw/train-*.tfrecord",
    ...                      out="out/sphere4", steps=100)
    >>> result = train(config)  # doctest: +SKIP
"""

from keras_sphereface.training.callbacks import TrainCallback
from keras_sphereface.training.checkpoints import latest_complete_checkpoint
from keras_sphereface.training.config import HEAD_SHARDINGS, PRECISIONS, STRATEGIES, TrainConfig
from keras_sphereface.training.heads import HEAD_NAMES, make_head
from keras_sphereface.training.inputs import RecordsError, RecordsInfo, read_records_info
from keras_sphereface.training.loop import NonFiniteLossError, TrainResult, train
from keras_sphereface.training.recipe_files import RECIPE_NAMES, config_to_toml, load_recipe, recipe_path
from keras_sphereface.training.schedule import learning_rate_at
from keras_sphereface.training.validation import BinSetError, PairListError, check_bin_files, check_pair_list

__all__ = [
    "HEAD_NAMES",
    "HEAD_SHARDINGS",
    "PRECISIONS",
    "RECIPE_NAMES",
    "STRATEGIES",
    "BinSetError",
    "NonFiniteLossError",
    "PairListError",
    "RecordsError",
    "RecordsInfo",
    "TrainCallback",
    "TrainConfig",
    "TrainResult",
    "check_bin_files",
    "check_pair_list",
    "config_to_toml",
    "latest_complete_checkpoint",
    "learning_rate_at",
    "load_recipe",
    "make_head",
    "read_records_info",
    "recipe_path",
    "train",
]
