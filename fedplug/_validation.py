"""The checks every layer makes on configuration values, written once.

Each raises the error class its caller names, with a message that names the thing at
fault and the fix. Pure standard library, so every layer may import it.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Collection, Iterable

from fedplug._errors import ConfigError


def quoted(names: Iterable[object]) -> str:
    """``'a', 'b', 'c'`` (or ``(none)`` when empty)."""
    items = [repr(n) if isinstance(n, str) else str(n) for n in names]
    return ", ".join(items) if items else "(none)"


def short_value(value: object, limit: int = 40) -> str:
    """A value as it should appear in a message: repr, shortened when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: object, candidates: Iterable[object], *, ignore_case: bool = False) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""

    def fold(text: str) -> str:
        return text.lower() if ignore_case else text

    by_form = {fold(str(c)): str(c) for c in candidates}
    close = difflib.get_close_matches(fold(str(word)), list(by_form), n=1, cutoff=0.6)
    return f" (did you mean {by_form[close[0]]!r}?)" if close else ""


def check_known_keys(
    given: Iterable[object],
    valid: Collection[str],
    *,
    where: str,
    noun: str = "key",
    error: type[Exception] = ConfigError,
    fix: str | None = None,
) -> None:
    """Raise ``error`` naming every key of ``given`` that is not in ``valid``.

    The message reads ``{where}: unknown key 'x' (did you mean 'y'?); valid keys are
    'a', 'b'``; ``noun`` replaces "key" and ``fix`` replaces the list of valid keys.
    """
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    names = ", ".join(f"{quoted([k])}{did_you_mean(k, valid)}" for k in unknown)
    plural = "s" if len(unknown) > 1 else ""
    tail = fix if fix is not None else f"valid {noun}s are {quoted(valid)}"
    raise error(f"{where}: unknown {noun}{plural} {names}; {tail}")


def int_at_least(
    value: object,
    minimum: int,
    *,
    name: str,
    fix: str,
    error: type[Exception] = ConfigError,
) -> int:
    """``value`` as an ``int`` when it is an integer >= ``minimum`` (bools are not), else
    ``error``: ``{name} must be a positive integer, got 0; {fix}``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if int(value) >= minimum:
            return int(value)
        shown = short_value(value)
    else:
        shown = f"{short_value(value)} ({type(value).__name__})"
    if minimum == 1:
        what = "a positive integer"
    elif minimum == 0:
        what = "a non-negative integer"
    else:
        what = f"an integer >= {minimum}"
    raise error(f"{name} must be {what}, got {shown}; {fix}")


def positive_int(
    value: object, *, name: str, fix: str, error: type[Exception] = ConfigError
) -> int:
    """``value`` as an ``int`` when it is an integer >= 1 (see :func:`int_at_least`)."""
    return int_at_least(value, 1, name=name, fix=fix, error=error)
