"""`ksf align`: align a folder of photos to the SphereFace/ArcFace template."""

from __future__ import annotations

import click

from ksf import options


@click.command()
@click.argument("src", type=click.Path(file_okay=False, exists=True))
@click.argument("dst", type=click.Path(file_okay=False))
@options.landmarks_option(help="Landmark file: `path x1 y1 ... x5 y5` per line, paths relative to SRC.")
@click.option("--detect", is_flag=True, help="Detect faces and landmarks with MTCNN (needs `mtcnn`).")
@options.template_option()
@click.option("--size", default="112x96", show_default=True, callback=options.parse_size_option,
              help="Output size HxW in pixels.")
@options.interpolation_option()
@options.workers_option()
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True,
              help="JPEG quality of the crops.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Where to write the JSON report [default: DST/align_report.json].")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any image produced no crop.")
@options.no_progress_option()
@options.report_errors
def align(src, dst, landmarks, detect, template, size, interpolation, workers, quality, report_path,
          strict, no_progress) -> None:
    """Align every image under SRC into DST (same folder structure); resumable."""
    if bool(landmarks) == bool(detect):
        raise click.UsageError("Give exactly one of --landmarks FILE or --detect.")
    from keras_sphereface.data.align_folder import REPORT_NAME, align_folder

    report = align_folder(
        src, dst, landmarks=landmarks, detect=detect, template=template, size=size,
        interpolation=interpolation, workers=workers, jpeg_quality=quality,
        report_path=report_path, progress=not no_progress,
    )
    where = report_path or f"{dst}/{REPORT_NAME}"
    click.echo(
        f"{report.aligned} aligned, {report.skipped_existing} already done, "
        f"{len(report.failures)} failed of {report.total}; report: {where}"
    )
    if strict and not report.ok:
        raise SystemExit(1)
