"""Non-negative integers read from a route or a query string.

Only ASCII decimal digits, and few enough of them: `str.isdigit` also takes "²" and
other digits `int` refuses, which made a request a server error instead of a 400.
"""

from __future__ import annotations


def count_of(text: str, digits: int = 18) -> int | None:
    """`text` as a non-negative integer of at most `digits` digits, or None."""
    if not text.isascii() or not text.isdecimal() or len(text) > digits:
        return None
    return int(text)
