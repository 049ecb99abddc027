"""`ksf convert`: PyTorch `.npz` state dicts and Caffe `.caffemodel` files to Keras `.weights.h5`."""

from __future__ import annotations

import click

from ksf import options


def _shared_options(function):
    """Options both converters take: registry tag, output file, input size."""
    return options.apply(
        click.option("--tag", default=None, metavar="TAG",
                     help="Registry tag (e.g. casia): verify the source's registered SHA-256 and write into "
                          "the weights cache, so MODEL(weights=TAG) loads it."),
        click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
                     help="Output .weights.h5 (required without --tag; default with it: the cache)."),
        click.option("--input-shape", default=None, metavar="HxW", callback=options.parse_size_option,
                     help="Input height x width, e.g. 112x96 (without --tag; default the builder's)."),
    )(function)


def _run(fmt: str, model: str, source: str, tag, output, input_shape, **converter_options) -> None:
    from keras_sphereface.models.conversion import convert_checkpoint

    try:
        path = convert_checkpoint(fmt, model, source, tag=tag, output=output,
                                  input_shape=None if input_shape is None else (*input_shape, 3),
                                  **converter_options)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote {path} (checksums in {path}.provenance.json)")


@click.group("convert")
def convert() -> None:
    """Convert checkpoints of other frameworks into keras_sphereface weights."""


@convert.command("torch-npz")
@click.argument("model")
@click.argument("npz", type=click.Path(dir_okay=False, exists=True))
@_shared_options
def torch_npz(model: str, npz: str, tag, output, input_shape) -> None:
    """Convert a PyTorch state dict saved as .npz (numpy.savez(path, **state_dict)).

    MODEL is mobilefacenet or iresnet18/34/50/100. Example:
    ksf convert torch-npz mobilefacenet $KSF_WEIGHTS_DIR/mobilefacenet-casia/mobilefacenet_casia_arcface.npz --tag casia
    """
    _run("torch-npz", model, npz, tag, output, input_shape)


@convert.command("caffe")
@click.argument("model")
@click.argument("caffemodel", type=click.Path(dir_okay=False, exists=True))
@_shared_options
@click.option("--input-channel-order", type=click.Choice(["BGR", "RGB"]), default=None,
              help="Channel order the Caffe model was trained on (without --tag; default BGR, as SphereFace). "
                   "BGR is folded into conv1_1 so the Keras model takes RGB.")
def caffe(model: str, caffemodel: str, tag, output, input_shape, input_channel_order) -> None:
    """Convert a SphereFace .caffemodel (no Caffe needed). MODEL is sphere4/10/20/36/64.

    Example: ksf convert caffe sphere20 sphereface_model.caffemodel --tag casia
    """
    converter_options = {} if tag is not None else {"input_channel_order": input_channel_order or "BGR"}
    _run("caffe", model, caffemodel, tag, output, input_shape, **converter_options)
