"""Small helpers shared by the genotype parsers (torch-free)."""

from __future__ import annotations

from typing import Any

_SHOW_LIMIT = 40


def show(value: Any) -> str:
    """``repr`` of untrusted input, cut short so error messages stay readable and bounded."""
    text = repr(value)
    if len(text) > _SHOW_LIMIT:
        text = text[: _SHOW_LIMIT - 3] + "..."
    return text


def type_name(value: Any) -> str:
    """JSON-ish name of a value's type for messages ("string", "integer", "list", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def is_int(value: Any) -> bool:
    """True for real integers; ``bool`` is an ``int`` subclass but never a valid index here."""
    return isinstance(value, int) and not isinstance(value, bool)
