"""The one exception type the core raises for bad input."""

from __future__ import annotations

from typing import Any


class RectifyError(ValueError):
    """Bad input to noise rectification.

    Every message names the field, the value that was given and what is allowed,
    so the host can show it to the user as it is (API error body, UI error box).
    """

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(
            f"Noise Rectification: {field} = {_short_repr(value)} is invalid; {allowed}"
        )


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
