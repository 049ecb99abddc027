"""Shared CLI options: choice lists are the library's constants, sizes parse once."""

from __future__ import annotations

import click
from click.testing import CliRunner

from keras_sphereface.data.align import INTERPOLATIONS, TEMPLATE_NAMES
from keras_sphereface.evaluation.protocol import PROTOCOLS
from keras_sphereface.models.preprocessing import PREPROCESSING_NAMES
from ksf import options


def test_choice_lists_come_from_the_library():
    assert options.LibraryChoice("keras_sphereface.data.align", "TEMPLATE_NAMES").choices == TEMPLATE_NAMES
    assert options.LibraryChoice("keras_sphereface.data.align", "INTERPOLATIONS").choices == tuple(INTERPOLATIONS)
    assert options.LibraryChoice("keras_sphereface.evaluation.protocol", "PROTOCOLS").choices == tuple(PROTOCOLS)
    assert options.LibraryChoice("keras_sphereface.models.preprocessing",
                                 "PREPROCESSING_NAMES").choices == PREPROCESSING_NAMES


def test_shared_options_parse_and_refuse():
    @click.command()
    @options.apply(options.template_option(), options.interpolation_option(),
                   click.option("--size", callback=options.parse_size_option))
    def command(template, interpolation, size):
        click.echo(f"{template} {interpolation} {size}")

    runner = CliRunner()
    result = runner.invoke(command, ["--template", "arcface", "--size", "112x112"])
    assert result.exit_code == 0 and result.output.strip() == "arcface bilinear (112, 112)"
    result = runner.invoke(command, ["--template", "vgg"])
    assert result.exit_code == 2 and "'vgg' is not one of 'sphereface', 'arcface'" in result.output
    result = runner.invoke(command, ["--size", "112"])
    assert result.exit_code == 2 and "size must look like HxW" in result.output
