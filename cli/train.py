"""`ksf train`: train a zoo backbone with a margin head on TFRecords (`keras_sphereface.training.train`)."""

from __future__ import annotations

import sys

import click

# Kept in sync with keras_sphereface.training (checked by tests/training/test_cli.py) without
# importing TensorFlow when the CLI starts.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "one", "mirrored", "multi-worker")
HEAD_NAMES = ("a-softmax", "arcface", "cosface", "combined", "norm-softmax", "sphereface-r")
# The exit status of a run stopped by a signal (after its checkpoint): 128 + the signal number.
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}


@click.command("train")
@click.option("--tfrecords", required=True, help="Glob pattern of training shards written by ksf make-tfrecords "
              "(labels.json beside them gives the number of classes).")
@click.option("--recipe", help="Recipe name (e.g. casia_sphere20_asoftmax, lfw-devtrain_sphere4_asoftmax) or a "
              ".toml file (e.g. a run's config.toml). Options given here override it.")
@click.option("--model", help="Zoo model name in lower case (sphere4, sphere20, mobilefacenet, iresnet50, ...).")
@click.option("--head", type=click.Choice(HEAD_NAMES), help="Margin head.")
@click.option("--weights", help="Initial backbone weights for fine-tuning: a tag (casia) or a .weights.h5 file.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Global batch size (split across replicas).")
@click.option("--steps", type=click.IntRange(min=1), help="Training steps (global batches).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Passes over the records.")
@click.option("--lr", type=click.FloatRange(min=0), help="Base learning rate.")
@click.option("--lr-boundaries",
              help="Comma-separated steps where the piecewise learning rate drops (e.g. 16000,24000).")
@click.option("--precision", type=click.Choice(PRECISIONS), help="Compute precision (heads stay float32).")
@click.option("--strategy", type=click.Choice(STRATEGIES), help="Distribution strategy.")
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
@click.option("--validate-every", type=click.IntRange(min=1), help="Steps between validations.")
@click.option("--seed", type=int, help="Seeds initialization, shuffling and augmentation.")
@click.option("--deterministic", is_flag=True, default=None, help="Deterministic TensorFlow ops (slower).")
@click.option("--time-limit", "time_limit_minutes", type=click.FloatRange(min=0, min_open=True),
              help="Stop (with a checkpoint and the final model) after this many minutes of training.")
@click.option("--on-nan", type=click.Choice(("stop", "skip")), help="Non-finite loss: stop naming the step, or "
              "skip the update.")
@click.option("--tag", help="Register the final weights under this tag (Sphere20(weights=TAG) then loads them).")
@click.option("--no-progress", is_flag=True, help="Plain log lines instead of a progress bar.")
def train(tfrecords, recipe, model, head, weights, batch_size, steps, epochs, lr, lr_boundaries, precision,
          strategy, jit_compile, out, resume, validate_pairs, validate_data, validate_skip_missing, validate_every,
          seed, deterministic, time_limit_minutes, on_nan, tag, no_progress) -> None:
    """Train a face-embedding model with a margin head (SphereFace A-Softmax, ArcFace, CosFace, ...)."""
    from keras_sphereface.training import NonFiniteLossError, load_recipe
    from keras_sphereface.training import train as run_training
    from keras_sphereface.utils.disk import WriteError

    if steps is not None and epochs is not None:
        raise click.UsageError("Give --steps or --epochs, not both.")
    boundaries = None
    if lr_boundaries is not None:
        try:
            boundaries = [int(v) for v in lr_boundaries.split(",") if v.strip()]
        except ValueError as error:
            raise click.BadParameter(f"expected comma-separated steps, got {lr_boundaries!r}",
                                     param_hint="--lr-boundaries") from error
    try:
        config = load_recipe(
            recipe, tfrecords=tfrecords, model=model, head=head, weights=weights, batch_size=batch_size,
            steps=steps, epochs=epochs, lr=lr, lr_boundaries=boundaries, precision=precision, strategy=strategy,
            jit_compile=jit_compile, out=out, resume=resume, validate_pairs=validate_pairs,
            validate_data=validate_data,
            validate_skip_missing=True if validate_skip_missing else None,
            validate_every=validate_every, seed=seed, deterministic=True if deterministic else None,
            time_limit_minutes=time_limit_minutes, on_nan=on_nan, tag=tag, progress=False if no_progress else None,
        )
        result = run_training(config)
    # Each names what failed and what to do: a NaN step, a full disk (what is kept), bad options or records.
    except (NonFiniteLossError, WriteError, ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    if result.interrupted:
        sys.exit(SIGNAL_EXIT[result.stopped])
