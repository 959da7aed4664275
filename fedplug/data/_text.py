"""The parts of error messages shared by the data layer (most live in fedplug._validation)."""

from __future__ import annotations

from typing import Any

from fedplug._validation import did_you_mean, quoted, short_value

__all__ = ["did_you_mean", "quoted", "short_value", "type_name"]


def type_name(value: Any) -> str:
    return type(value).__name__
