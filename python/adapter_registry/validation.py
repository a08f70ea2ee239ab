"""Checks of the caller's metadata: ids, task types, sources, numbers. Each failure raises
InvalidAdapterError naming the field and the value."""

from __future__ import annotations

import json
import math
import numbers
import re
import uuid
from collections.abc import Iterable
from typing import Any

from .errors import InvalidAdapterError

__all__ = [
    "SOURCES",
    "check_adapter_id",
    "check_details",
    "check_evaluation",
    "check_finite",
    "check_fitness",
    "check_name",
    "check_optional_text",
    "check_parent_ids",
    "check_pass_rate",
    "check_task_type",
    "check_text",
    "check_threads",
]

SOURCES = frozenset({"distillation", "evolution", "manual"})
_KEBAB = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
#: The longest free-text field, in characters...
MAX_TEXT = 512
#: ...but for a base model, which may be a local path (Linux's PATH_MAX).
MAX_BASE_MODEL = 4096
#: C0 and C1 control characters (tab, newline and ESC among them) and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_adapter_id(value: Any, what: str = "adapter id") -> str:
    """A canonical (lower-case, hyphenated) UUID version 4."""
    if not isinstance(value, str):
        raise InvalidAdapterError(f"{what} {value!r} is not a string")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value or parsed.version != 4:
        raise InvalidAdapterError(f"{what} {value!r} is not a canonical UUID v4")
    return value


def check_task_type(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64 or not _KEBAB.fullmatch(value):
        raise InvalidAdapterError(
            f"task_type {value!r} is not kebab-case (lower-case words and '-', e.g. 'bug-fix')"
        )
    return value


def check_source(value: Any) -> str:
    if value not in SOURCES:
        raise InvalidAdapterError(f"source {value!r} is not one of {sorted(SOURCES)}")
    return str(value)


def check_text(name: str, value: Any, limit: int = MAX_TEXT) -> str:
    """A non-empty line of printable text that encodes as UTF-8, at most ``limit`` characters.

    Both databases store it as given, and every command prints it, so it is checked here,
    before anything is written: a lone surrogate cannot be stored, and a control character
    (an ESC starts a terminal escape) must never reach a terminal.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidAdapterError(f"{name} {value!r} must be a non-empty single-line string")
    if len(value) > limit:
        raise InvalidAdapterError(f"{name} is {len(value)} characters long; the limit is {limit}")
    control = _CONTROL.search(value)
    if control is not None:
        raise InvalidAdapterError(
            f"{name} {value!r} must be a non-empty single-line string without control "
            f"characters (it holds U+{ord(control.group()):04X})"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidAdapterError(
            f"{name} {value!r} is not valid Unicode ({err.reason} at position {err.start})"
        ) from None
    return value


def check_optional_text(name: str, value: Any) -> str | None:
    return None if value is None else check_text(name, value)


def check_finite(name: str, value: Any) -> float:
    """A real number (int, float, numpy's floats; never a bool) that is finite as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidAdapterError(f"{name} {value!r} is not a finite number")
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        number = math.inf
    if not math.isfinite(number):
        raise InvalidAdapterError(f"{name} {_short(value)} is not a finite number")
    return number


def _short(value: Any) -> str:
    """A value for a message, cut short (an int of 400 digits is not worth printing whole)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "(huge int)"
    return text if len(text) <= 60 else text[:57] + "..."


def check_pass_rate(value: Any) -> float | None:
    if value is None:
        return None
    rate = check_finite("pass_rate", value)
    if not 0.0 <= rate <= 1.0:
        raise InvalidAdapterError(f"pass_rate {value!r} is outside 0..1")
    return rate


def check_fitness(value: Any) -> float | None:
    return None if value is None else check_finite("fitness_score", value)


def check_evaluation(fitness_score: Any, pass_rate: Any) -> dict[str, float]:
    """The columns an evaluation sets: those given, checked; at least one."""
    values: dict[str, float] = {}
    if fitness_score is not None:
        values["fitness_score"] = check_finite("fitness_score", fitness_score)
    if pass_rate is not None:
        values["pass_rate"] = check_pass_rate(pass_rate)  # type: ignore[assignment]
    if not values:
        raise InvalidAdapterError("update_fitness needs fitness_score or pass_rate")
    return values


#: The largest integer either database stores (SQLite's INTEGER, PostgreSQL's BIGINT).
MAX_INTEGER = 2**63 - 1


def check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INTEGER:
        raise InvalidAdapterError(
            f"{name} {_short(value)} must be an integer from {minimum} to 2**63 - 1"
        )
    return value


_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
#: Hex digits and hyphens holding 8 or more digits: a UUID or an id prefix, never a name.
_ID_SHAPED = re.compile(r"(?=(?:[^0-9a-f]*[0-9a-f]){8})[0-9a-f-]+")
MAX_NAME = 128


def check_name(kind: str, value: Any) -> str:
    """An alias or a tag key: lower-case ``[a-z0-9][a-z0-9._-]*``, 128 characters at most,
    and never shaped like an adapter id or an id prefix (so a name is never mistaken for one)."""
    if not isinstance(value, str) or len(value) > MAX_NAME or not _NAME.fullmatch(value):
        raise InvalidAdapterError(
            f"{kind} {value!r} must be lower-case letters, digits, '.', '_' and '-' "
            f"(starting with a letter or digit), at most {MAX_NAME} characters"
        )
    if _ID_SHAPED.fullmatch(value):
        raise InvalidAdapterError(
            f"{kind} {value!r} looks like an adapter id or id prefix; choose a name that does not"
        )
    return value


#: The largest ``details`` of an evaluation, as JSON.
MAX_DETAILS = 64 * 1024


def check_details(value: Any) -> str | None:
    """An evaluation's details: a JSON object of at most 64 KB, returned as its JSON text."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidAdapterError(
            f"details must be a dict (a JSON object), not {type(value).__name__}"
        )
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False, ensure_ascii=False)
        size = len(text.encode("utf-8"))
    except RecursionError:
        raise InvalidAdapterError("details are nested too deeply") from None
    except (TypeError, ValueError) as err:  # UnicodeEncodeError is a ValueError
        raise InvalidAdapterError(f"details are not JSON: {err}") from None
    if size > MAX_DETAILS:
        raise InvalidAdapterError(f"details are {size} bytes as JSON; the limit is {MAX_DETAILS}")
    return text


def check_threads(value: Any) -> int | None:
    """A thread count: None (one per core) or a positive integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
        raise InvalidAdapterError(f"threads {_short(value)} must be an integer from 1 to 4096")
    return value


def check_parent_ids(values: Iterable[Any], adapter_id: str) -> list[str]:
    if isinstance(values, (str, bytes)):
        raise InvalidAdapterError("parent_ids must be a list of adapter ids, not a single string")
    if not isinstance(values, Iterable) or isinstance(values, dict):
        raise InvalidAdapterError(
            f"parent_ids must be a list of adapter ids, not {type(values).__name__}"
        )
    parents = [check_adapter_id(v, "parent id") for v in values]
    if len(set(parents)) != len(parents):
        raise InvalidAdapterError(f"parent_ids {parents} name a parent twice")
    if adapter_id in parents:
        raise InvalidAdapterError("an adapter cannot be its own parent")
    return parents
