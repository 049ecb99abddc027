"""`parse_size`: the one `HxW` parser."""

from __future__ import annotations

import pytest

from keras_sphereface.utils.sizes import parse_size


@pytest.mark.parametrize("text, expected", [("112x96", (112, 96)), ("112X112", (112, 112)), ((64, 32), (64, 32))])
def test_parses_height_then_width(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["112", "112x", "x96", "0x96", "-1x96", "axb", "1x2x3", None, (1,)])
def test_rejects_with_the_argument_named(bad):
    with pytest.raises(ValueError, match=r"--resize must look like HxW.*Received: --resize="):
        parse_size(bad, what="--resize")
