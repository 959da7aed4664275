"""Small helpers that build the parts of error messages shared by the data layer."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def quoted(names: Iterable[Any]) -> str:
    """``'a', 'b', 'c'`` (or ``(none)`` when empty)."""
    items = [repr(n) if isinstance(n, str) else str(n) for n in names]
    return ", ".join(items) if items else "(none)"


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def short_value(value: Any, limit: int = 40) -> str:
    """A value as it should appear in a message: repr, shortened when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value: Any) -> str:
    return type(value).__name__
