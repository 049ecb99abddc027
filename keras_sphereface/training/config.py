"""`TrainConfig`: every training option, its defaults and the checks of its values.

The TOML recipes that set these fields are read and written by `recipe_files.py`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import PurePath
from typing import Any

from keras_sphereface.data.augment import Augmentation

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "one", "mirrored", "multi-worker")
#: How the margin head's class centres sit on several replicas (`TrainConfig.head_sharding`).
HEAD_SHARDINGS = ("auto", "replicated", "sharded")
#: How the SGD momentum of Partial FC and sharded centres is stored (`TrainConfig.centres_momentum`).
CENTRES_MOMENTUM = ("float32", "int8")
LR_SCHEDULES = ("piecewise", "polynomial", "constant")
ON_NAN = ("stop", "skip")
DECAY_ON = ("kernels", "all")
#: The `ALIGN_MODES` a training input can use (records store no detector output).
TRAINING_ALIGN_MODES = ("aligned", "landmarks")
#: Where a new A-Softmax head's lambda starts: Caffe's schedule from `base`, or its floor `lambda_min`.
LAMBDA_STARTS = ("schedule", "floor")


@dataclasses.dataclass
class TrainConfig:
    """Every option of a training run (`train(config)`); the CLI and the recipes set these fields.

    Data:
        tfrecords: str. Glob pattern of the training shards written by `ksf make-tfrecords`
            (e.g. `"out/lfw/records/train-*.tfrecord"`); `labels.json` beside them gives
            the number of classes.
        input_size: list of 2 ints or None. `[height, width]` of the network input in pixels;
            None: the zoo model's default (112x96 for Sphere nets and MobileFaceNet).
        align: str. How records become crops (`keras_sphereface.data.face_source.ALIGN_MODES`):
            `"aligned"`: the records hold aligned crops of `input_size`; `"landmarks"`: align on
            the fly from the landmarks stored in the records (records of original photos).
            `false` / `true` are read as these two.
        template: str. Alignment template when `align="landmarks"` (`"sphereface"`, `"arcface"`).
        flip: bool. Random horizontal flip (the SphereFace paper's only augmentation).
        random_crop: float in [0, 1). Random crop removing up to this fraction of each side,
            resized back (0: off). The augmentations, their order and draws:
            `keras_sphereface.data.augment`.
        brightness: float >= 0. Random brightness offset up to this many grey levels (0: off).
        contrast: float in [0, 1). Random contrast factor in `[1 - contrast, 1 + contrast]` (0: off).
        random_erase: float in [0, 1]. Probability of erasing one random rectangle (2-25% of the
            crop) to grey (0: off).
        shuffle_buffer: int. Examples in the shuffle buffer. The buffer is part of every
            checkpoint (about `shuffle_buffer * height * width * 3` bytes).

    Model:
        model: str. Zoo name in lower case (`keras_sphereface.models.zoo.MODEL_NAMES`).
        embedding_dim: int or None. Embedding size; None: the builder's default.
        weights: str or None. Initial backbone weights (a tag such as `"casia"`, or a
            `.weights.h5` file) for fine-tuning; None: random initialization.
        head: str. `"a-softmax"`, `"arcface"`, `"cosface"`, `"combined"`, `"norm-softmax"`,
            `"sphereface-r"` (see `keras_sphereface.training.heads`).
        head_options: dict. Keyword arguments of the head (e.g. `{m = 4, base = 1000.0}`,
            `{s = 64.0, m = 0.5}`, a staged A-Softmax `{m = 4, m_schedule = [[0, 1], [2000, 4]]}`, a
            margin warm-up `{m = 0.5, margin_warmup_steps = 1000}`).
        lambda_start: str. Where a new A-Softmax head's lambda starts (logged at the start):
            `"schedule"` (iteration 0: Caffe's annealing from `base`, for training from scratch) or
            `"floor"` (the iteration where lambda reaches `lambda_min`: for fine-tuning `weights`
            that were trained past the annealing). A resumed run always continues its checkpoint's.

    Optimization (SGD with momentum):
        batch_size: int. Global batch, split evenly across replicas.
        steps: int or None. Training steps (global batches). Exactly one of `steps` and
            `epochs` is set.
        epochs: float or None. Passes over the training records; converted to steps with
            the manifest's example count.
        lr: float. Base learning rate for a global batch of `lr_reference_batch` images; the
            rate applied is `lr * batch_size / lr_reference_batch` (linear scaling, printed at start).
        lr_reference_batch: int. The global batch `lr` is stated for (256: the SphereFace paper's
            batch, and the one insightface quotes its rates for).
        lr_schedule: str. `"piecewise"` (multiply by `lr_decay` at each step of
            `lr_boundaries`, Caffe's `multistep`), `"polynomial"` (insightface's
            `lr * (1 - step / steps) ** lr_power`) or `"constant"`.
        lr_boundaries: list of int. Global steps at which the piecewise rate drops.
        lr_decay: float. Factor of each piecewise drop.
        lr_power: float. Power of the polynomial schedule.
        warmup_steps: int. Linear warm-up from 0 to the rate over these steps; 0: use
            `warmup_fraction`.
        warmup_fraction: float in [0, 1). Warm-up over this fraction of the run's steps when
            `warmup_steps` is 0.
        clip_norm: float. Clip the global gradient norm (over all replicas) to this; `inf`
            (TOML `clip_norm = inf`, `--clip-norm inf`): no clipping.
        convergence_check_after: int. From this step on, each logged interval whose loss is
            still within `convergence_tolerance` of ln(classes) (or above it), or whose training
            accuracy is 0, is flagged on the console and in `metrics.csv` (`warning`), with the
            remedies for the head; training goes on. 0 disables the check.
        convergence_tolerance: float. Relative distance to ln(classes) that counts as "no progress".
        sample_rate: float in (0, 1]. Partial FC: each step's logits cover every class of the
            batch plus uniformly sampled others, `sample_rate * classes` in all (at least one per
            image); only the sampled centres and their momentum are updated. 1.0: the full head.
        head_sharding: str. The class centres on several replicas: `"sharded"` splits them
            (each replica holds `classes / replicas` centres; embeddings and labels are
            all-gathered and the softmax normalizer reduced across replicas), `"replicated"`
            gives every replica all of them, `"auto"` shards under Partial FC (`sample_rate < 1`)
            and replicates the full head. One replica holds all centres whatever the choice.
        centres_momentum: str. The storage of the centres' SGD momentum when the head holds its
            own centres (Partial FC or sharded): `"float32"`, or `"int8"` (a byte per value and
            a float32 scale per row, 0.25x the memory at 512-d;
            `keras_sphereface.training.centre_momentum`).
        momentum: float. SGD momentum.
        nesterov: bool. Nesterov momentum.
        weight_decay: float. L2 decay coefficient as Caffe and PyTorch define it (the gradient
            gains `weight_decay * w`), applied to `weight_decay_on` variables.
        weight_decay_on: str. `"kernels"` (convolution, dense and head kernels: Caffe's
            `decay_mult: 1` on weights, 0 on biases) or `"all"` trainable variables
            (insightface's `torch.optim.SGD(weight_decay=...)`).
        bias_lr_mult: float. Learning-rate multiplier of bias variables (Caffe's `lr_mult: 2`
            on biases in the SphereFace prototxt). 1 disables it.

    Precision and distribution:
        precision: str. `"float32"`, `"mixed_float16"` (with loss scaling) or
            `"mixed_bfloat16"`; heads always compute in float32.
        jit_compile: bool. Compile each replica's forward and backward pass with XLA
            (`tf.function(jit_compile=True)`); the optimizer update stays outside. Measured in
            `docs/performance.md` (`bench/train_step.py`): it pays for Sphere nets on CPU.
        strategy: str. `"auto"` (multi-worker when `TF_CONFIG` names several workers,
            mirrored over several visible GPUs, else one device), `"one"`, `"mirrored"`
            or `"multi-worker"`.

    Run control:
        out: str. Output folder (config, checkpoints, logs, final model).
        resume: bool. Continue from the latest complete checkpoint in `out`.
        seed: int or None. Seeds initialization, shuffling and augmentation; None draws one
            (recorded in `config.toml`, so a resumed run keeps it).
        deterministic: bool. `tf.config.experimental.enable_op_determinism()`.
        checkpoint_every: int. Steps between checkpoints (plus one at the end and on
            SIGTERM/SIGINT).
        keep_checkpoints: int. Checkpoints kept.
        log_every: int. Steps between logged (TensorBoard, CSV, progress) figures.
        on_nan: str. `"stop"`: a non-finite loss stops the run naming the step; `"skip"`:
            the update is skipped (loss scaling's finite check) and training goes on.
        time_limit_minutes: float or None. Stop (with a checkpoint) after this much
            training wall time; None: no limit.
        validate_pairs: str or None. Pair list (`ksf eval pairs` format) checked at start
            and evaluated every `validate_every` steps and at the end.
        validate_data: str or None. Dataset folder for the pairs (as `ksf eval pairs --data`).
        validate_bin: list of str. insightface `.bin` verification sets (`lfw.bin`, `cfp_fp.bin`, ...),
            each read and checked at start (before anything is written) and evaluated every
            `validate_every` steps and at the end under the SphereFace protocol, beside
            `validate_pairs`: one `val/<stem>` figure each. Stems must differ.
        validate_every: int. Steps between validations.
        validate_skip_missing: bool. Pairs whose images or landmarks are missing are listed at
            start and left out (False: they stop the run before step 1).
        tag: str or None. Register the final weights under this tag
            (`keras_sphereface.models.register_weights`).
        description: str. Free text recorded in `config.toml` and with a tag.
        progress: bool. Show a progress bar on a terminal (plain log lines otherwise).
    """

    tfrecords: str = ""
    input_size: list[int] | None = None
    align: str = "aligned"
    template: str = "sphereface"
    flip: bool = True
    random_crop: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    random_erase: float = 0.0
    shuffle_buffer: int = 8192

    model: str = "sphere20"
    embedding_dim: int | None = None
    weights: str | None = None
    head: str = "a-softmax"
    head_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    lambda_start: str = "schedule"

    batch_size: int = 256
    steps: int | None = None
    epochs: float | None = None
    lr: float = 0.1
    lr_reference_batch: int = 256
    lr_schedule: str = "piecewise"
    lr_boundaries: list[int] = dataclasses.field(default_factory=list)
    lr_decay: float = 0.1
    lr_power: float = 2.0
    warmup_steps: int = 0
    warmup_fraction: float = 0.05
    clip_norm: float = 5.0
    convergence_check_after: int = 200
    convergence_tolerance: float = 0.05
    sample_rate: float = 1.0
    head_sharding: str = "auto"
    centres_momentum: str = "float32"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    weight_decay_on: str = "kernels"
    bias_lr_mult: float = 1.0

    precision: str = "float32"
    jit_compile: bool = False
    strategy: str = "auto"

    out: str = "out/train"
    resume: bool = True
    seed: int | None = None
    deterministic: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 20
    on_nan: str = "stop"
    time_limit_minutes: float | None = None
    validate_pairs: str | None = None
    validate_data: str | None = None
    validate_bin: list[str] = dataclasses.field(default_factory=list)
    validate_every: int = 1000
    validate_skip_missing: bool = False
    tag: str | None = None
    description: str = ""
    progress: bool = True

    def __post_init__(self):
        self.validate(require_data=False)

    def validate(self, require_data: bool = True) -> TrainConfig:
        """Checks every field; raises `ValueError` naming the field and the value received.

        Args:
            require_data: bool. Also require `tfrecords` and one of `steps`/`epochs` (a run;
                recipes may leave them out).

        Returns:
            self.
        """
        _choice("precision", self.precision, PRECISIONS)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("head_sharding", self.head_sharding, HEAD_SHARDINGS)
        _choice("centres_momentum", self.centres_momentum, CENTRES_MOMENTUM)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("on_nan", self.on_nan, ON_NAN)
        _choice("weight_decay_on", self.weight_decay_on, DECAY_ON)
        _choice("lambda_start", self.lambda_start, LAMBDA_STARTS)
        for name in ("batch_size", "lr_reference_batch", "checkpoint_every", "keep_checkpoints", "log_every",
                     "validate_every", "shuffle_buffer"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        for name in ("lr", "lr_decay", "lr_power", "momentum", "weight_decay", "bias_lr_mult"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0. Received: {name}={value!r}")
        if isinstance(self.align, bool):
            self.align = "landmarks" if self.align else "aligned"
        _choice("align", self.align, TRAINING_ALIGN_MODES)
        _check_warmup_and_guard(self)
        self.augmentation()
        if not isinstance(self.jit_compile, bool):
            raise ValueError(f"`jit_compile` must be true or false. Received: jit_compile={self.jit_compile!r}")
        if self.steps is not None and self.epochs is not None:
            raise ValueError(f"Set `steps` or `epochs`, not both. Received: steps={self.steps}, "
                             f"epochs={self.epochs}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"`steps` must be a positive integer. Received: steps={self.steps!r}")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"`epochs` must be > 0. Received: epochs={self.epochs!r}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 1):
            raise ValueError(f"`input_size` must be [height, width]. Received: input_size={self.input_size!r}")
        if list(self.lr_boundaries) != sorted(self.lr_boundaries):
            raise ValueError(f"`lr_boundaries` must be increasing steps. Received: "
                             f"lr_boundaries={self.lr_boundaries!r}")
        if (self.validate_pairs is None) != (self.validate_data is None):
            raise ValueError(f"`validate_pairs` and `validate_data` go together. Received: validate_pairs="
                             f"{self.validate_pairs!r}, validate_data={self.validate_data!r}")
        _check_validate_bin(self)
        if self.time_limit_minutes is not None and not self.time_limit_minutes > 0:
            raise ValueError(f"`time_limit_minutes` must be > 0. Received: "
                             f"time_limit_minutes={self.time_limit_minutes!r}")
        if not isinstance(self.head_options, dict):
            raise ValueError(f"`head_options` must be a table. Received: head_options={self.head_options!r}")
        if require_data:
            if not self.tfrecords:
                raise ValueError("`tfrecords` (a glob pattern of training shards) is required. Received: "
                                 "tfrecords=''")
            if self.steps is None and self.epochs is None:
                raise ValueError("Set the length of the run: `steps` or `epochs`. Received: neither")
        return self

    def replace(self, **overrides) -> TrainConfig:
        """A copy with `overrides` applied (None values are ignored: "not given")."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"Unknown training option(s) {unknown}; known: {sorted(fields)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if "steps" in given:
            given.setdefault("epochs", None)
        if "epochs" in given:
            given.setdefault("steps", None)
        values = {**dataclasses.asdict(self), **given}
        return TrainConfig(**values)

    def augmentation(self) -> Augmentation:
        """The training crops' augmentation; raises `ValueError` naming a bad field."""
        return Augmentation(flip=bool(self.flip), random_crop=self.random_crop, brightness=self.brightness,
                            contrast=self.contrast, random_erase=self.random_erase)

    def shards_head(self, replicas: int) -> bool:
        """Whether the head's class centres are split across `replicas` (see `head_sharding`)."""
        if replicas < 2 or self.head_sharding == "replicated":
            return False
        return self.head_sharding == "sharded" or self.sample_rate < 1


def head_updates_centres(sample_rate: float, sharded: bool) -> bool:
    """Whether the margin head updates its class centres itself rather than through the optimizer.

    Partial FC (`sample_rate < 1`) and sharded centres are trained by the head's own SGD step, whose
    momentum is stored as `TrainConfig.centres_momentum` says; a full replicated head's kernel is an
    ordinary weight of the optimizer.
    """
    return sharded or sample_rate < 1


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_warmup_and_guard(config: TrainConfig) -> None:
    """The checks of the warm-up, clipping, convergence-check and sample-rate options (each error names the option)."""
    if not isinstance(config.warmup_steps, int) or isinstance(config.warmup_steps, bool) or config.warmup_steps < 0:
        raise ValueError(f"`warmup_steps` must be an integer >= 0. Received: warmup_steps={config.warmup_steps!r}")
    if config.steps is not None and config.warmup_steps >= config.steps:
        raise ValueError(f"`warmup_steps` must be shorter than the run (steps={config.steps}). Received: "
                         f"warmup_steps={config.warmup_steps}")
    if not _is_number(config.warmup_fraction) or not 0 <= config.warmup_fraction < 1:
        raise ValueError(f"`warmup_fraction` must be a number in [0, 1) (a fraction of the run). Received: "
                         f"warmup_fraction={config.warmup_fraction!r}")
    clip = config.clip_norm
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or math.isnan(clip) or clip <= 0:
        raise ValueError(f"`clip_norm` must be a number > 0 (inf: no clipping). Received: clip_norm={clip!r}")
    after = config.convergence_check_after
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValueError(f"`convergence_check_after` must be an integer >= 0 (0: no check). Received: "
                         f"convergence_check_after={after!r}")
    rate = config.sample_rate
    if not _is_number(rate) or not 0 < rate <= 1:
        raise ValueError(f"`sample_rate` must be a number in (0, 1] (1.0: the full head). Received: "
                         f"sample_rate={rate!r}")
    if not _is_number(config.convergence_tolerance) or not 0 < config.convergence_tolerance < 1:
        raise ValueError(f"`convergence_tolerance` must be a number in (0, 1). Received: "
                         f"convergence_tolerance={config.convergence_tolerance!r}")


def _check_validate_bin(config: TrainConfig) -> None:
    """`validate_bin`: a list of `.bin` paths (a comma-separated string is split), with distinct stems."""
    paths = config.validate_bin
    if isinstance(paths, str):
        paths = config.validate_bin = [p.strip() for p in paths.split(",") if p.strip()]
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, str) and p for p in paths):
        raise ValueError(f"`validate_bin` must be a list of .bin file paths. Received: validate_bin={paths!r}")
    config.validate_bin = list(paths)
    stems = [PurePath(p).stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError(f"Each `validate_bin` file needs its own name (its figure is val/<name>). "
                         f"Received: validate_bin={paths!r}")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}")
