"""What the commands print about bad input: one line, whatever names the input carries."""
from __future__ import annotations

__all__ = ["one_line"]


def one_line(message: str) -> str:
    """The message with its line breaks and other control characters escaped: a file's own names (a column called
    "a\\rb") must not break the one-line error."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
