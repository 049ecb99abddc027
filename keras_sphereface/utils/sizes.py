"""`parse_size`: the one parser of `HxW` image sizes (`"112x96"` -> `(112, 96)`)."""

from __future__ import annotations

from collections.abc import Sequence


def parse_size(size: str | Sequence[int], what: str = "size") -> tuple[int, int]:
    """Parses `"HxW"` (e.g. `"112x96"`, height first) or a `(height, width)` pair of positive ints.

    Args:
        size: str or sequence of 2 ints. The size, in pixels.
        what: str. The argument's name for the error message.

    Returns:
        `(height, width)`.

    Raises:
        ValueError: not of that form, or not positive.
    """
    try:
        parts = size.lower().split("x") if isinstance(size, str) else list(size)
        if len(parts) != 2:
            raise ValueError
        height, width = (int(str(p).strip()) for p in parts)
    except (TypeError, ValueError):
        height = width = 0
    if height <= 0 or width <= 0:
        raise ValueError(f"{what} must look like HxW (height x width): expected HxW such as 112x96. "
                         f"Received: {what}={size!r}")
    return height, width
