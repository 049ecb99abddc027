"""`ksf make-tfrecords`: write a folder-per-identity tree, a list file or a RecordIO set as sharded TFRecords."""

from __future__ import annotations

import click

from ksf import options


@click.command("make-tfrecords")
@click.argument("src", type=click.Path(exists=True))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--shards", type=click.IntRange(min=1), default=16, show_default=True,
              help="Training shards.")
@click.option("--val-shards", type=click.IntRange(min=1), help="Validation shards [default: shards // 8].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds example order and split.")
@options.landmarks_option(
    help="Store these 5-point landmarks (paths as in SRC) for on-the-fly alignment.")
@click.option("--exclude", type=click.Path(dir_okay=False, exists=True),
              help="File of identities to leave out (e.g. those overlapping a test set).")
@click.option("--people", type=click.Path(dir_okay=False, exists=True),
              help="Keep only the identities of this file (e.g. LFW peopleDevTrain.txt).")
@click.option("--min-images", type=click.IntRange(min=1), default=1, show_default=True,
              help="Keep identities with at least this many images.")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0,
              show_default=True, help="Fraction of identities held out for validation.")
@click.option("--resize", callback=options.parse_size_option,
              help="Resize and re-encode images to HxW (default: keep bytes).")
@options.workers_option(help="Shards written in parallel.")
@click.option("--check", type=options.LibraryChoice("keras_sphereface.data.records", "CHECKS"), default=None,
              help="decode: decode every image, skipping corrupt ones; header: read only its JPEG/PNG header "
                   "(a byte copy). Default: header for a RecordIO folder, else decode.")
@options.report_errors
def make_tfrecords(src, out_dir, shards, val_shards, seed, landmarks, exclude, people, min_images,
                   val_fraction, resize, workers, check) -> None:
    """Write SRC as TFRecords in OUT_DIR: a folder SRC/<identity>/<image>, a `path label` list file, or an
    insightface RecordIO folder (train.rec + train.idx + property; the identities are its class numbers)."""
    from keras_sphereface.data.records import write_tfrecords

    manifest = write_tfrecords(
        src, out_dir, num_shards=shards, val_shards=val_shards, seed=seed, landmarks=landmarks,
        exclude=exclude, people=people, min_images=min_images, val_fraction=val_fraction,
        resize=resize, workers=workers, check=check,
    )
    for split, info in manifest["splits"].items():
        click.echo(f"{split}: {info['num_examples']} examples, {info['num_classes']} identities, "
                   f"{len(info['shards'])} shards ({info['pattern']})")
    click.echo(f"skipped {manifest['skipped']} unreadable or unusable images (see {out_dir}/report.json)")
