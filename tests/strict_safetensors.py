"""A strict safetensors header reader, the tests' oracle for the core's parser: written on
Python's ``json`` module with hooks, so nothing in it shares serde's data model (the core's
earlier parser and the reference reader are both serde, and accepted ``"dtype": {"F32": null}``).

What it accepts is the format as huggingface/safetensors describes it, plus the registry's own
rules, each stated once below:

- 8 bytes of little-endian header length N, N <= 100 MB (the reference reader's limit) and no
  more than the bytes that follow;
- the header is UTF-8, starts with ``{``, and is one JSON object followed by nothing but
  spaces; JSON as RFC 8259 has it, with no NaN/Infinity, no fraction or exponent where an
  integer is expected, no sign on an integer (``-0`` included), no string holding a lone
  surrogate (not UTF-8), and every object's keys distinct after unescaping;
- ``__metadata__``, at most once: an object of string to string;
- every other key a tensor name, not empty and without NUL, whose value is an object of exactly
  ``dtype`` (a string, one of ``DTYPE_BITS``), ``shape`` (an array of at most 64 integers) and
  ``data_offsets`` (an array of two integers), integers at most 2**64 - 1;
- at most 100,000 tensors; each tensor's element count times its dtype's bits is a whole number
  of bytes, each running product within 64 bits, equal to ``end - begin``; sorted by their
  offsets, the tensors tile the data region from 0 to its end, with no gap and no overlap.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DTYPE_BITS", "MAX_DIMS", "MAX_HEADER_LEN", "MAX_TENSORS", "Refused", "read_header"]

MAX_HEADER_LEN = 100_000_000
MAX_TENSORS = 100_000
MAX_DIMS = 64
U64_MAX = 2**64 - 1

#: Every dtype of the safetensors format and its width in bits.
DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
    "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64,
    "U64": 64,
}  # fmt: skip

Tensor = tuple[str, str, list[int]]


class Refused(ValueError):
    """The header is not one this reader accepts."""


class _Object(list[tuple[str, Any]]):
    """A JSON object, its pairs in order (a list is a JSON array)."""


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Refused("a key appears twice in one object")
    return _Object(pairs)


def _integer(literal: str) -> int:
    if literal.startswith("-"):
        raise Refused(f"a signed integer {literal}")
    return int(literal)


def _not_integer(literal: str) -> Any:
    raise Refused(f"{literal} is not an integer")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise Refused(f"{value!r} is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("a string holds a lone surrogate") from None
    return value


def _integers(value: Any, most: int) -> list[int]:
    if not isinstance(value, list) or isinstance(value, _Object) or len(value) > most:
        raise Refused(f"{value!r} is not an array of at most {most} integers")
    if not all(type(v) is int and 0 <= v <= U64_MAX for v in value):
        raise Refused(f"{value!r} holds something other than a 64-bit unsigned integer")
    return value


def _tensor(name: str, entry: Any) -> tuple[Tensor, tuple[int, int]]:
    if not name or "\0" in name:
        raise Refused("an empty tensor name, or one holding NUL")
    if not isinstance(entry, _Object):
        raise Refused(f"tensor {name!r} is not an object")
    fields = dict(entry)
    if set(fields) != {"dtype", "shape", "data_offsets"}:
        raise Refused(f"tensor {name!r} has the fields {sorted(fields)}")
    dtype = _text(fields["dtype"])
    if dtype not in DTYPE_BITS:
        raise Refused(f"unknown dtype {dtype!r}")
    shape = _integers(fields["shape"], MAX_DIMS)
    offsets = _integers(fields["data_offsets"], 2)
    if len(offsets) != 2:
        raise Refused("data_offsets is not a pair")
    elements = 1
    for dim in shape:
        elements *= dim
        if elements > U64_MAX:
            raise Refused(f"shape {shape} overflows")
    bits = elements * DTYPE_BITS[dtype]
    begin, end = offsets
    if bits > U64_MAX or bits % 8 or end < begin or end - begin != bits // 8:
        raise Refused(f"tensor {name!r}: {dtype} {shape} does not fill {offsets}")
    return (name, dtype, shape), (begin, end)


def read_header(data: bytes) -> tuple[list[Tensor], list[tuple[str, str]]]:
    """Tensors in file order (by offsets) and ``__metadata__`` pairs, or raise Refused."""
    if len(data) < 8:
        raise Refused("shorter than the length prefix")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_LEN or n > len(data) - 8:
        raise Refused(f"header length {n}")
    try:
        text = data[8 : 8 + n].decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("not UTF-8") from None
    body = text.rstrip(" ")
    if not text.startswith("{") or not body.endswith("}"):
        raise Refused("not one object padded with spaces")
    try:
        top = json.loads(
            body,
            object_pairs_hook=_pairs,
            parse_int=_integer,
            parse_float=_not_integer,
            parse_constant=_not_integer,
        )
    except (ValueError, RecursionError) as err:  # JSONDecodeError, a 4,301-digit integer
        raise Refused(f"not JSON: {err}") from None
    metadata: list[tuple[str, str]] = []
    placed: list[tuple[tuple[int, int], Tensor]] = []
    for key, value in top:
        _text(key)
        if key == "__metadata__":
            if not isinstance(value, _Object):
                raise Refused("__metadata__ is not an object")
            metadata = [(_text(k), _text(v)) for k, v in value]
            continue
        if len(placed) == MAX_TENSORS:
            raise Refused(f"more than {MAX_TENSORS} tensors")
        tensor, offsets = _tensor(key, value)
        placed.append((offsets, tensor))
    placed.sort(key=lambda p: p[0])  # stable: tensors at the same offsets keep file order
    cursor = 0
    for (begin, end), _ in placed:
        if begin != cursor:
            raise Refused("a gap or an overlap")
        cursor = end
    if cursor != len(data) - 8 - n:
        raise Refused("the tensors do not cover the data region")
    return [t for _, t in placed], metadata
