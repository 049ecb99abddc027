"""`ksf train`: train a zoo backbone with a margin head on TFRecords (`keras_sphereface.training.train`)."""

from __future__ import annotations

import sys

import click

from ksf.options import LibraryChoice

#: The module of the run's choice lists (precisions, strategies, head shardings, centres' momentum).
CONFIG = "keras_sphereface.training.config"
# The exit status of a run stopped by a signal (after its checkpoint): 128 + the signal number.
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


@click.command("train")
@click.option("--tfrecords", required=True, help="Glob pattern of training shards written by ksf make-tfrecords "
              "(labels.json beside them gives the number of classes).")
@click.option("--recipe", help="Recipe name (e.g. casia_sphere20_asoftmax, lfw-devtrain_sphere4_asoftmax) or a "
              ".toml file (e.g. a run's config.toml). Options given here override it.")
@click.option("--model", help="Zoo model name in lower case (sphere4, sphere20, mobilefacenet, iresnet50, ...).")
@click.option("--head", type=LibraryChoice("keras_sphereface.training.heads", "HEAD_NAMES"), help="Margin head.")
@click.option("--weights", help="Initial backbone weights for fine-tuning: a tag (casia) or a .weights.h5 file.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Global batch size (split across replicas).")
@click.option("--steps", type=click.IntRange(min=1), help="Training steps (global batches).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Passes over the records.")
@click.option("--lr", type=click.FloatRange(min=0), help="Learning rate for a global batch of --lr-reference-batch "
              "images (the rate applied scales linearly with --batch-size).")
@click.option("--lr-reference-batch", type=click.IntRange(min=1), help="The global batch --lr is stated for "
              "[default: 256, as the SphereFace paper and insightface].")
@click.option("--warmup-steps", type=click.IntRange(min=0), help="Linear learning-rate warm-up over these steps "
              "(0: use --warmup-fraction).")
@click.option("--warmup-fraction", type=click.FloatRange(min=0, max=1, max_open=True),
              help="Warm-up over this fraction of the run when --warmup-steps is 0.")
@click.option("--clip-norm", type=float, help="Clip the global gradient norm to this ('inf': no clipping).")
@click.option("--sample-rate", type=click.FloatRange(min=0, max=1, min_open=True), help="Partial FC: each "
              "step's logits cover the batch's classes plus sampled others, this fraction of all classes "
              "[default: 1.0, the full head].")
@click.option("--convergence-check-after", type=click.IntRange(min=0), help="From this step on, warn (console and "
              "metrics.csv) while the loss stays near ln(classes) or the accuracy is 0 (0: no check).")
@click.option("--head-option", "head_option", multiple=True, metavar="KEY=VALUE",
              help="A head keyword (TOML value), added to the recipe's head_options; repeatable, e.g. "
                   "--head-option margin_warmup_steps=1000 --head-option 'm_schedule=[[0, 1], [2000, 4]]'.")
@click.option("--lambda-start", type=click.Choice(("schedule", "floor")), help="A new A-Softmax head's lambda: "
              "Caffe's annealing from base (schedule), or its floor lambda_min (floor: fine-tuning).")
@click.option("--lr-boundaries",
              help="Comma-separated steps where the piecewise learning rate drops (e.g. 16000,24000).")
@click.option("--random-crop", type=float, help="Augmentation: a random "
              "crop removing up to this fraction of each side, resized back [default: 0, off].")
@click.option("--brightness", type=float, help="Augmentation: a random brightness offset up to "
              "this many grey levels (0-255) [default: 0, off].")
@click.option("--contrast", type=float, help="Augmentation: a random "
              "contrast factor in [1 - C, 1 + C] [default: 0, off].")
@click.option("--random-erase", type=float, help="Augmentation: the probability of "
              "erasing one random rectangle (2-25%% of the crop) to grey [default: 0, off].")
@click.option("--precision", type=LibraryChoice(CONFIG, "PRECISIONS"), help="Compute precision (heads stay float32).")
@click.option("--strategy", type=LibraryChoice(CONFIG, "STRATEGIES"), help="Distribution strategy.")
@click.option("--head-sharding", type=LibraryChoice(CONFIG, "HEAD_SHARDINGS"),
              help="The class centres on several replicas: split across them (sharded), on every one "
              "(replicated), or sharded under Partial FC only (auto) [default: auto].")
@click.option("--centres-momentum", type=LibraryChoice(CONFIG, "CENTRES_MOMENTUM"),
              help="Storage of the SGD momentum of Partial FC or sharded centres: float32, or int8 (a quarter of "
              "the memory) [default: float32].")
@click.option("--jit-compile/--no-jit-compile", default=None,
              help="Compile forward and backward with XLA [default: the recipe's, off].")
@click.option("--out", help="Output folder (config.toml, checkpoints, logs, final model).")
@click.option("--resume/--no-resume", default=None,
              help="Resume from the latest checkpoint in --out [default: resume].")
@click.option("--validate-pairs", type=click.Path(dir_okay=False), help="Pair list evaluated during training "
              "(checked before step 1).")
@click.option("--validate-data", type=click.Path(file_okay=False), help="Dataset folder of the pairs (as ksf eval "
              "pairs --data).")
@click.option("--validate-skip-missing", is_flag=True, default=None, help="Leave out (and list at start) pairs "
              "whose images or landmarks are missing, instead of stopping before step 1.")
@click.option("--validate-bin", "validate_bin", help="Comma-separated insightface .bin sets (lfw.bin,cfp_fp.bin) "
              "evaluated during training, one val/<name> figure each (read and checked before step 1).")
@click.option("--validate-every", type=click.IntRange(min=1), help="Steps between validations.")
@click.option("--seed", type=int, help="Seeds initialization, shuffling and augmentation.")
@click.option("--deterministic", is_flag=True, default=None, help="Deterministic TensorFlow ops (slower).")
@click.option("--time-limit", "time_limit_minutes", type=click.FloatRange(min=0, min_open=True),
              help="Stop (with a checkpoint and the final model) after this many minutes of training.")
@click.option("--on-nan", type=click.Choice(("stop", "skip")), help="Non-finite loss: stop naming the step, or "
              "skip the update.")
@click.option("--tag", help="Register the final weights under this tag (Sphere20(weights=TAG) then loads them).")
@click.option("--no-progress", is_flag=True, help="Plain log lines instead of a progress bar.")
def train(recipe: str | None, lr_boundaries: str | None, head_option: tuple[str, ...], no_progress: bool,
          validate_skip_missing: bool | None, deterministic: bool | None, **options) -> None:
    """Train a face-embedding model with a margin head (SphereFace A-Softmax, ArcFace, CosFace, ...)."""
    from keras_sphereface.training import NonFiniteLossError, load_recipe
    from keras_sphereface.training import train as run_training
    from keras_sphereface.utils.disk import WriteError

    if options["steps"] is not None and options["epochs"] is not None:
        raise click.UsageError("Give --steps or --epochs, not both.")
    boundaries = None
    if lr_boundaries is not None:
        try:
            boundaries = [int(v) for v in lr_boundaries.split(",") if v.strip()]
        except ValueError as error:
            raise click.BadParameter(f"expected comma-separated steps, got {lr_boundaries!r}",
                                     param_hint="--lr-boundaries") from error
    try:
        config = load_recipe(recipe, lr_boundaries=boundaries, validate_skip_missing=validate_skip_missing or None,
                             deterministic=deterministic or None, progress=False if no_progress else None, **options)
        if head_option:
            config = config.replace(head_options={**config.head_options, **_head_options(head_option)})
        result = run_training(config)
    # Each names what failed and what to do: a NaN step, a full disk (what is kept), bad options or records.
    except (NonFiniteLossError, WriteError, ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    if result.interrupted:
        sys.exit(SIGNAL_EXIT[result.stopped])


def _head_options(pairs: tuple[str, ...]) -> dict:
    """`KEY=VALUE` words (TOML values) as a dict; a `click.BadParameter` names a bad one."""
    import tomllib

    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep or not key.strip().isidentifier():
                raise ValueError("expected KEY=VALUE")
            parsed[key.strip()] = tomllib.loads(f"value = {value}")["value"]
        except (ValueError, tomllib.TOMLDecodeError) as error:
            raise click.BadParameter(f"{pair!r}: {error} (VALUE is a TOML value: 4, 0.5, [[0, 1], [2000, 4]])",
                                     param_hint="--head-option") from error
    return parsed
