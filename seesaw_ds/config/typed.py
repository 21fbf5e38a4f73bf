"""Typed config values: one helper per JSON type, each refusing any other type by name.

JSON and YAML hand the parser ``bool``, ``int``, ``float``, ``str``, lists and mappings.
Python's ``bool("false")`` is True and ``True == 1``, so a loose check turns
``"enabled": "false"`` into an enabled feature and ``false`` into the number 0. Every key of
the ``seesaw`` section goes through one of these helpers (see
``seesaw_ds.config.section.KEY_TYPES``); each raises one :class:`SeesawConfigError` naming
the field, the value and what to write instead.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from seesaw_ds.errors import SeesawConfigError, text_number_hint

__all__ = ["boolean", "number", "whole", "choice", "token_count", "is_number", "key_name",
           "close_match"]

_SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def is_number(value: Any) -> bool:
    """A JSON number (int or float, not a bool), finite and within float range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def key_name(key: Any) -> str:
    """A mapping key as it prints on one line: plain text as is, anything else (a key with a
    newline or a control character, a YAML number) as its repr."""
    if isinstance(key, str) and key and key.isprintable() and key.strip() == key:
        return key
    return repr(key)


def close_match(value: Any, options: Sequence[str]) -> str:
    """" Did you mean 'x'?" for a string close to one of ``options``, else ""."""
    import difflib

    close = difflib.get_close_matches(value, list(options), n=1) if isinstance(value, str) \
        else []
    return f" Did you mean {close[0]!r}?" if close else ""


def boolean(field: str, value: Any) -> bool:
    """``true`` or ``false``; strings such as "false" or "no" and numbers are refused."""
    if not isinstance(value, bool):
        raise SeesawConfigError(
            f"{field} = {value!r} must be true or false (a JSON boolean, not a string or a "
            "number).")
    return value


def number(field: str, value: Any, minimum: Optional[float] = None) -> float:
    """A finite JSON number (bools and numeric strings refused), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SeesawConfigError(f"{field} = {value!r} must be a number.{text_number_hint(value)}")
    if not is_number(value):
        raise SeesawConfigError(f"{field} = {value!r} must be a finite number.")
    if minimum is not None and value < minimum:
        raise SeesawConfigError(f"{field} = {value!r} must be >= {minimum}.")
    return float(value)


def whole(field: str, value: Any, minimum: Optional[int] = None) -> int:
    """A whole JSON number (``8`` or ``8.0``; not ``8.5``, ``"8"`` or ``true``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SeesawConfigError(
            f"{field} = {value!r} must be a whole number.{text_number_hint(value)}")
    if not is_number(value) or value != int(value):
        raise SeesawConfigError(f"{field} = {value!r} must be a whole number.")
    if minimum is not None and value < minimum:
        raise SeesawConfigError(f"{field} = {value!r} must be >= {minimum}.")
    return int(value)


def choice(field: str, value: Any, options: Sequence[str], hint: str = "") -> str:
    """One of ``options`` (strings); anything else, of any type, is refused naming them."""
    if isinstance(value, str) and value in options:
        return value
    raise SeesawConfigError(
        f"{field} = {value!r} is unknown.{close_match(value, options)} Use one of "
        f"{list(options)}{hint}.")


def token_count(field: str, value: Any) -> float:
    """A positive token count from a number or a string like ``"3.3B"`` / ``"250M"``."""
    parsed = value
    if isinstance(value, str):
        text = value.strip().upper()
        scale = _SUFFIXES.get(text[-1:], None)
        try:
            parsed = float(text[:-1]) * scale if scale else float(text)
        except ValueError:
            parsed = None
    if not is_number(parsed):
        raise SeesawConfigError(
            f"{field} = {value!r} is not a token count: give a number such as 3.3e9 or a "
            "string such as \"3.3B\".")
    if parsed <= 0:
        raise SeesawConfigError(f"{field} = {value!r} must be a positive number of tokens.")
    return float(parsed)
