"""`ksf export`: a face embedder as a TF Serving SavedModel (or TFLite / ONNX) with its contract."""

from __future__ import annotations

import warnings

import click

from ksf.options import LibraryChoice, model_option, out_option, report_errors, weights_option


@click.command("export")
@model_option(help="Zoo model name (keras_sphereface.models.zoo, e.g. mobilefacenet) or a .keras file.")
@weights_option()
@out_option(None, "Export root (required): writes OUT/<name>/<version>/ (and OUT/models.config, OUT/README.md).")
@click.option("--name", default=None, help="Served model name / folder. Default: the model's name.")
@click.option("--version", "version", type=click.IntRange(1), default=None,
              help="Version folder. Default: one more than the highest present. Existing versions are never "
                   "overwritten.")
@click.option("--format", "fmt", type=LibraryChoice("keras_sphereface.inference.contract", "FORMATS"),
              default="savedmodel", show_default=True,
              help="savedmodel: TF Serving, 3 signatures; tflite / onnx: serving_default only.")
@click.option("--flip-fusion", type=LibraryChoice("keras_sphereface.inference.contract", "FLIP_FUSIONS"),
              default="none", is_flag=False,
              flag_value="concat", show_default=True,
              help="Embed each image and its mirror: concat = [f(x), f(flip x)] as the SphereFace protocol "
                   "(--flip-fusion alone), sum = f(x) + f(flip x).")
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Cosine threshold stored for the verify signature (same = score > threshold).")
@click.option("--threshold-from", "threshold_report", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Take the threshold from a `ksf eval` report.json (its mean fold threshold, protocol, data).")
@click.option("--no-warmup", is_flag=True, help="Do not write TF Serving's warm-up file.")
@report_errors
def export(model, weights, out_dir, name, version, fmt, flip_fusion, threshold, threshold_report, no_warmup) -> None:
    """Export the embedding network with its preprocessing for TF Serving, TFLite or ONNX.

    Example: ksf export --model mobilefacenet --weights casia --out exports --threshold-from out/eval/lfw/report.json
    """
    if out_dir is None:
        raise click.UsageError("Missing option '--out' (the export root).")
    if threshold is not None and threshold_report is not None:
        raise click.UsageError("--threshold and --threshold-from exclude each other.")
    from keras_sphereface.export import ThresholdProtocolWarning, export_model
    from keras_sphereface.inference.contract import threshold_from_report

    origin = threshold_from_report(threshold_report) if threshold_report else {}
    if threshold is not None:
        origin = {"threshold": threshold, "threshold_source": "given (ksf export --threshold)"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ThresholdProtocolWarning)
        result = export_model(model, out_dir, name, version, format=fmt, weights=weights,
                              flip_fusion=flip_fusion, warmup=not no_warmup, **origin)
    for warning in caught:
        if issubclass(warning.category, ThresholdProtocolWarning):
            click.echo(f"Warning: {warning.message}", err=True)
    contract = result.contract
    click.echo(f"wrote {result.path} ({result.format}, version {result.version})")
    click.echo(f"  signatures: {', '.join(contract.signatures)}; input {contract.input_size[0]}x"
               f"{contract.input_size[1]} RGB 0..255, embedding {contract.embedding_dim} (L2-normalized), "
               f"flip fusion {contract.flip_fusion}")
    click.echo(f"  threshold: {contract.describe_threshold()}")
    for path in result.files:
        click.echo(f"  {path}")
