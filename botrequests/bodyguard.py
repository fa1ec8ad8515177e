"""Checks on a raw JSON body, before anything parses it, each linear in the body's size.

- **Nesting**: Python's `json.loads` recurses once per `[` / `{`; a hostile body of a
  million of them would exhaust it. The depth is counted on the bytes, with strings
  skipped, in one left-to-right pass.
- **Values MongoDB cannot hold, or JSON does not have**: `NaN`, `Infinity` and numbers
  that overflow a double (`1e400`) are not JSON numbers, and Python's parser would accept
  them as floats; integers past 64 bits cannot be stored in BSON (and past 4 300 digits
  Python refuses to parse them at all); a lone UTF-16 surrogate (`"\\ud800"`) is not
  Unicode and cannot be encoded for the database. A cheap scan decides whether a body
  may hold one of these; only then is it parsed (with hooks that never convert a huge
  number) and walked to name the field that holds it.

Why a single pass matters: the previous string-skipping regular expression backtracked
from every quote of an unterminated string, quadratic in the body (17.6 s at 64 KB).
"""

import json
import math
import re
from typing import Any

# A string, closed or not: the closing quote is optional, so a match never backtracks
# and scanning resumes after it (an unterminated string ends the body: invalid JSON).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PAIR = re.compile(rb"\[\]|\{\}")
_OPENERS = frozenset(b"[{")
_OPENER_OF = {ord("]"): ord("["), ord("}"): ord("{")}
# Outside strings: the constants Python accepts, long digit runs, 3-digit exponents.
_SUSPECT_NUMBER = re.compile(rb"NaN|Infinity|[0-9]{16}|[eE][+-]?[0-9]{3}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
INT64_MAX = 2**63 - 1


def strip_strings(body: bytes) -> bytes:
    return _STRING.sub(b'""', body)


def depth_exceeds(stripped: bytes, limit: int) -> bool:
    """Whether brackets (outside strings, so `stripped`) nest deeper than `limit`.

    Linear and mostly in C: keep only the brackets, then delete innermost `[]` / `{}`
    pairs at most `limit` times (each pass takes one level off every path). What is left
    is walked with a stack, which ends within about `limit` steps: either a path deeper than
    the limit, or the first bracket out of place (invalid JSON: the parser stops there).
    """
    brackets = stripped.translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False  # the common case: too few brackets to matter
    passes = 0
    while passes < limit:
        reduced = _PAIR.sub(b"", brackets)
        if len(reduced) == len(brackets):
            break
        brackets, passes = reduced, passes + 1
    # Each pass took one level off every path, so what is left may nest `limit - passes`.
    allowed = limit - passes
    stack: list[int] = []
    for byte in brackets:
        if byte in _OPENERS:
            stack.append(byte)
            if len(stack) > allowed:
                return True
        elif not stack or stack.pop() != _OPENER_OF[byte]:
            return False
    return False


class Bad:
    """A value the hooks refused, left in the parsed tree to be found with its path."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _constant(text: str) -> Bad:
    return Bad(f"{text} is not a JSON number")


def _float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else Bad(f"number {text[:30]} is out of range")


def _int(text: str) -> Any:
    digits = text.lstrip("-")
    if len(digits) > 19 or int(text) > INT64_MAX or int(text) < -INT64_MAX - 1:
        shown = text if len(text) <= 30 else text[:30] + "…"
        return Bad(f"integer {shown} is out of range (64 bits at most)")
    return int(text)


def has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


SURROGATE = "holds a lone UTF-16 surrogate (such as \\ud800), which is not Unicode text"


def _find_bad(root: Any) -> tuple[list[str | int], str] | None:
    """The path to the first refused value or surrogate-holding string; iterative, so a
    deep tree cannot exhaust the stack (depth is checked before this anyway)."""
    stack: list[tuple[list[str | int], Any]] = [([], root)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Bad):
            return path, value.reason
        if isinstance(value, str):
            if has_surrogate(value):
                return path, f"text {SURROGATE}"
        elif isinstance(value, dict):
            for key in reversed(list(value)):
                if has_surrogate(key):
                    return path, f"a key {SURROGATE}"
                stack.append(([*path, key], value[key]))
        elif isinstance(value, list):
            stack.extend(([*path, index], value[index]) for index in reversed(range(len(value))))
    return None


# json.loads hooks that never convert a huge number and leave a `Bad` where JSON or
# MongoDB cannot hold a value (also used by the importer).
PARSE_HOOKS: dict[str, Any] = {
    "parse_constant": _constant,
    "parse_float": _float,
    "parse_int": _int,
}


def unstorable(body: bytes, stripped: bytes) -> tuple[list[str | int], str] | None:
    """`(path, reason)` for the first value JSON or MongoDB cannot hold, else None. A body
    that is not JSON at all is left to the parser (a 422 of its own)."""
    if not (_SUSPECT_NUMBER.search(stripped) or _SURROGATE_ESCAPE.search(body)):
        return None
    try:
        parsed = json.loads(body, **PARSE_HOOKS)
    except (ValueError, RecursionError):
        return None
    return _find_bad(parsed)
