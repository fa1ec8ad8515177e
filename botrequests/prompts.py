"""Bot input definitions, request inputs checked against them, and safe prompt templates.

Input types: text, textarea (strings), number (int or float, not bool), select (one of
`options`), multiselect (a list of `options`), checkbox (true/false), file (a File id, or a
list of them). A template names inputs as `{name}`; `{{` and `}}` are literal braces.
Rendering is plain substitution of the values: no attribute or index access, no
conversions or format specs, no positional fields — those are rejected when the bot is
saved — and a value holding braces is inserted as it is.
"""

import re
import string
from dataclasses import dataclass
from typing import Any

import orjson
from bson import ObjectId

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEX_ID = re.compile(r"^[0-9a-fA-F]{24}$")
SELECT_TYPES = ("select", "multiselect")
MAX_TEXT = 100_000
MAX_FILES = 100
# A prompt rendered from a template holds at most this many characters (as a `prompt`
# sent in a body): 50 000 placeholders of a 100 000-character value would be 5 GB.
MAX_PROMPT = 200_000
_ALLOWED = "\x00allowed"  # cache key inside a definition dict; never stored or served


class PromptTooLong(ValueError):
    pass


@dataclass
class Problem:
    loc: list[str | int]
    msg: str

    def as_detail(self) -> dict[str, Any]:
        return {"loc": self.loc, "msg": self.msg, "type": "value_error"}


def option_values(options: list[Any] | None) -> list[Any]:
    """An option is a plain value or `{"label": …, "value": …}`."""
    return [o.get("value") if isinstance(o, dict) else o for o in options or []]


def _option_key(value: Any) -> Any:
    """A hashable stand-in for an option value, equal where the values are equal (and a
    boolean never equal to a number), so membership is one set lookup."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", value)
    return ("json", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def _allowed(definition: dict[str, Any]) -> frozenset:
    """The definition's option keys, computed once per definition dict (a batch checks
    many requests against one bot)."""
    cached = definition.get(_ALLOWED)
    if cached is None:
        cached = frozenset(_option_key(v) for v in option_values(definition.get("options")))
        definition[_ALLOWED] = cached
    return cached


def _shown(definition: dict[str, Any]) -> str:
    values = option_values(definition.get("options"))
    shown = ", ".join(repr(v) for v in values[:10])
    return f"[{shown}{', …' if len(values) > 10 else ''}]"


def check_value(definition: dict[str, Any], value: Any) -> str | None:
    """Why `value` does not fit the input definition, or None. File ids are checked for
    existence elsewhere (one query for a whole request or batch)."""
    kind = definition.get("inputType")
    if kind in ("text", "textarea"):
        if not isinstance(value, str):
            return "must be a string"
        if len(value) > MAX_TEXT:
            return f"must be at most {MAX_TEXT} characters"
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
    elif kind == "checkbox":
        if not isinstance(value, bool):
            return "must be true or false"
    elif kind == "select":
        if _option_key(value) not in _allowed(definition):
            return f"must be one of the options {_shown(definition)}"
    elif kind == "multiselect":
        allowed = _allowed(definition)
        if not isinstance(value, list):
            return f"must be a list of the options {_shown(definition)}"
        # Bounded before it is checked: each option at most once.
        if len(value) > len(allowed):
            return f"must hold at most {len(allowed)} values (each option once)"
        if any(_option_key(item) not in allowed for item in value):
            return f"must be a list of the options {_shown(definition)}"
    elif kind == "file":
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_FILES:
            return f"must name at most {MAX_FILES} files"
        if not items or not all(isinstance(i, str) and HEX_ID.match(i) for i in items):
            return "must be a File id (24 hex digits) or a list of them"
    return None


def template_fields(template: str) -> list[str]:
    """The input names a template uses; ValueError for anything but `{identifier}`."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed template: {exc}") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not IDENTIFIER.match(field):
            raise ValueError(
                f"placeholder {{{field}}} is not an input name: only {{name}} is allowed "
                "(no attribute or index access, no positional fields)"
            )
        if spec or conversion:
            raise ValueError(f"placeholder {{{field}}} may not have a conversion or format")
        names.append(field)
    return names


def check_definitions(inputs: list[dict[str, Any]], template: str | None) -> list[Problem]:
    """Problems of a bot's input definitions and template (body locations)."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, item in enumerate(inputs):
        name = item["name"]
        where: list[str | int] = ["body", "inputs", index]
        if not IDENTIFIER.match(name):
            problems.append(Problem([*where, "name"], f"input {name!r}: not an identifier"))
        if name in seen:
            problems.append(Problem([*where, "name"], f"input {name!r}: name used twice"))
        seen.add(name)
        if item["inputType"] in SELECT_TYPES and not item.get("options"):
            problems.append(
                Problem([*where, "options"], f"input {name!r}: {item['inputType']} needs options")
            )
        default = item.get("defaultValue")
        if default is not None:
            reason = check_value(item, default)
            if reason:
                problems.append(
                    Problem([*where, "defaultValue"], f"input {name!r}: default {reason}")
                )
    if template is not None:
        try:
            unknown = [f for f in template_fields(template) if f not in seen]
        except ValueError as exc:
            problems.append(Problem(["body", "promptTemplate"], str(exc)))
        else:
            if unknown:
                problems.append(
                    Problem(
                        ["body", "promptTemplate"],
                        f"names {unknown[0]!r}, which is not a declared input",
                    )
                )
    return problems


def normalise(
    definitions: list[dict[str, Any]] | None, given: dict[str, Any] | None, loc: list
) -> tuple[dict[str, Any], list[Problem], list[str]]:
    """The request's inputs with defaults filled in, the problems, and the File ids the
    file inputs name. Without stored definitions (a bot written elsewhere with no `inputs`
    field) the inputs are kept as they are."""
    given = dict(given or {})
    if definitions is None:
        return given, [], []
    by_name = {d.get("name"): d for d in definitions}
    problems = [
        Problem([*loc, name], f"unknown input {name!r}") for name in given if name not in by_name
    ]
    out: dict[str, Any] = {}
    files: list[str] = []
    for name, definition in by_name.items():
        if name is None:
            continue
        if name not in given or given[name] is None:
            if definition.get("defaultValue") is not None:
                out[name] = definition["defaultValue"]
            elif definition.get("required"):
                problems.append(Problem([*loc, name], f"input {name!r} is required"))
            continue
        value = given[name]
        reason = check_value(definition, value)
        if reason:
            problems.append(Problem([*loc, name], f"input {name!r} {reason}"))
            continue
        if definition.get("inputType") == "file":
            value = [v.lower() for v in value] if isinstance(value, list) else value.lower()
            files += value if isinstance(value, list) else [value]
        out[name] = value
    return out, problems, files


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value)
    if value is None:
        return ""
    if isinstance(value, ObjectId):
        return str(value)
    return str(value)


def render(template: str, inputs: dict[str, Any]) -> str:
    """Plain substitution: literal text and input values, nothing evaluated. Stops as soon
    as the prompt would pass MAX_PROMPT characters (PromptTooLong), before building it."""
    parts, size = [], 0
    texts: dict[str, str] = {}
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        size += len(literal)
        if field is not None:
            if field not in texts:
                texts[field] = _text(inputs.get(field))
            parts.append(texts[field])
            size += len(texts[field])
        if size > MAX_PROMPT:
            raise PromptTooLong(
                f"the prompt built from the bot's template would be over {MAX_PROMPT} "
                "characters; send shorter inputs, or the prompt itself"
            )
    return "".join(parts)
