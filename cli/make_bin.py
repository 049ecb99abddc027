"""`ksf make-bin`: build an insightface `.bin` verification set from a pair list and aligned images."""

from __future__ import annotations

import click

from ksf import options


@click.command("make-bin")
@click.argument("pairs_file", type=click.Path(dir_okay=False, exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@options.data_option(help="Data folder: images under <data>/images (or <data>), 5 points in <data>/landmarks.txt.")
@options.landmarks_option(help="5-point landmark file. Default: <data>/landmarks.txt.")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Image folder. Default: <data>/images if it exists, else <data>.")
@click.option("--template", type=options.LibraryChoice("keras_sphereface.data.align", "TEMPLATE_NAMES"),
              default="arcface", show_default=True,
              help="arcface: 112x112 crops, insightface's alignment (what .bin readers expect); sphereface: 112x96.")
@click.option("--image-format", type=options.LibraryChoice("keras_sphereface.evaluation.bin_make", "IMAGE_FORMATS"),
              default="jpeg", show_default=True, help="Encoding of the crops (insightface's sets hold JPEGs).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality.")
@click.option("--skip-missing", is_flag=True,
              help="Leave out pairs whose image or landmarks are missing, and count them.")
@options.report_errors
def make_bin(pairs_file, out, data_dir, landmarks, images_dir, template, image_format, quality, skip_missing) -> None:
    """Write the pairs of PAIRS_FILE (LFW pairs.txt format, or `path1 path2 same` lines), aligned with their
    landmarks, as the insightface .bin verification set OUT (read by `ksf eval bin` and insightface's tools)."""
    from keras_sphereface.evaluation import make_bin as build

    result = build(pairs_file, data_dir, out, template=template, landmarks=landmarks, images_dir=images_dir,
                   skip_missing=skip_missing, image_format=image_format, quality=quality)
    for pair in result["skipped"][:10]:
        click.echo(f"skipped line {pair['line']}: {pair['reason']}")
    click.echo(f"{out}: {result['pairs']} pairs ({result['same']} same), {result['images']} "
               f"{result['size'][0]}x{result['size'][1]} {template} crops; skipped {result['skipped_pairs']} pairs")
