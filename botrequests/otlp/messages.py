"""The conversation a model span carries, in one shape whatever wrote it.

Three conventions are read, the first found wins:

- the GenAI semantic conventions' latest: `gen_ai.system_instructions`,
  `gen_ai.input.messages`, `gen_ai.output.messages` (JSON text, or structured values);
- OpenInference: `llm.input_messages.N.message.*`, `llm.output_messages.N.message.*`;
- OpenLLMetry's indexed attributes: `gen_ai.prompt.N.*`, `gen_ai.completion.N.*`.

Each message becomes `{"role", "content"}` (its text parts joined), with `toolCalls`
(`name`, `arguments`) and `finishReason` when given. Bounded: at most MAX_MESSAGES each
way; anything malformed refuses the span, naming the attribute.
"""

import re
from typing import Any

import orjson

from botrequests import bodyguard
from botrequests.otlp.decode import TOO_DEEP

MAX_MESSAGES = 1000
MAX_TOOL_CALLS = 100
_JSON_DEPTH = 32


class Refused(Exception):
    """The span cannot be recorded; the text says why (naming the attribute)."""


Message = dict[str, Any]


def conversation(attributes: dict[str, Any]) -> tuple[list[Message], list[Message]]:
    """The input messages (system instructions first) and the output messages."""
    if "gen_ai.input.messages" in attributes or "gen_ai.output.messages" in attributes:
        system = _parts_message("system", attributes.get("gen_ai.system_instructions"))
        given = _structured(attributes, "gen_ai.input.messages")
        return ([system] if system else []) + given, _structured(
            attributes, "gen_ai.output.messages"
        )
    indexed = _indexed(attributes)
    if "llm.input_messages" in indexed or "llm.output_messages" in indexed:
        return (
            _openinference(indexed.get("llm.input_messages", {}), "llm.input_messages"),
            _openinference(indexed.get("llm.output_messages", {}), "llm.output_messages"),
        )
    return (
        _openllmetry(indexed.get("gen_ai.prompt", {}), "gen_ai.prompt"),
        _openllmetry(indexed.get("gen_ai.completion", {}), "gen_ai.completion"),
    )


def as_text(messages: list[Message]) -> str:
    """The messages as one text: `role: content` paragraphs."""
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages if m.get("content"))


# --- the latest conventions: JSON text (or structured values) ----------------------------


def _loaded(attributes: dict[str, Any], name: str) -> Any:
    value = attributes.get(name)
    if value is TOO_DEEP:
        raise Refused(f"{name} nests too deep")
    if not isinstance(value, str):
        return value
    raw = value.encode()
    stripped = bodyguard.strip_strings(raw)
    if bodyguard.depth_exceeds(stripped, _JSON_DEPTH):
        raise Refused(f"{name} nests deeper than {_JSON_DEPTH} levels")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused(f"{name} is not JSON") from None


def _structured(attributes: dict[str, Any], name: str) -> list[Message]:
    value = _loaded(attributes, name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise Refused(f"{name} must be a list of messages")
    if len(value) > MAX_MESSAGES:
        raise Refused(f"{name} holds {len(value)} messages; at most {MAX_MESSAGES}")
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise Refused(f"{name}[{index}] is not a message")
        message = _parts_message(_role(item.get("role"), f"{name}[{index}]"), item.get("parts"))
        if message is None:
            message = {"role": _role(item.get("role"), f"{name}[{index}]"), "content": ""}
        reason = item.get("finish_reason")
        if isinstance(reason, str):
            message["finishReason"] = reason
        out.append(message)
    return out


def _parts_message(role: str, parts: Any) -> Message | None:
    """A message from the latest conventions' parts (text, tool calls, tool answers)."""
    if isinstance(parts, str):
        parts = _loaded({"parts": parts}, "parts")
    if parts is None:
        return None
    if not isinstance(parts, list):
        raise Refused(f"the {role} message's parts must be a list")
    texts, calls = [], []
    for part in parts[: MAX_MESSAGES * 10]:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "tool_call":
            calls.append(_call(part.get("name"), part.get("arguments")))
        elif kind == "tool_call_response":
            texts.append(_as_text(part.get("response", part.get("result"))))
        elif "content" in part:
            texts.append(_as_text(part.get("content")))
    message: Message = {"role": role, "content": "\n".join(t for t in texts if t)}
    if calls:
        message["toolCalls"] = calls[:MAX_TOOL_CALLS]
    return message


# --- indexed attributes: OpenInference and OpenLLMetry ----------------------------------

_INDEXED = re.compile(
    r"^(llm\.input_messages|llm\.output_messages|gen_ai\.prompt|gen_ai\.completion)"
    r"\.(\d{1,9})\.(.+)$"
)
_OI_TEXT = re.compile(r"^message\.contents\.(\d{1,4})\.message_content\.text$")
_OI_CALL = re.compile(r"^message\.tool_calls\.(\d{1,4})\.tool_call\.function\.(name|arguments)$")
_LL_CALL = re.compile(r"^tool_calls\.(\d{1,4})\.(name|arguments)$")


def _indexed(attributes: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    """`prefix.N.rest` attributes by prefix, then N, then rest (one pass)."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in attributes.items():
        if not key.startswith(("llm.input_messages.", "llm.output_messages.", "gen_ai.")):
            continue
        match = _INDEXED.match(key)
        if match is None:
            continue
        prefix, number, rest = match.group(1), int(match.group(2)), match.group(3)
        if number >= MAX_MESSAGES:
            raise Refused(f"{key}: message index past {MAX_MESSAGES - 1}")
        found.setdefault(prefix, {}).setdefault(number, {})[rest] = value
    return found


def _openinference(by_index: dict[int, dict[str, Any]], prefix: str) -> list[Message]:
    out = []
    for number in sorted(by_index):
        fields = by_index[number]
        where = f"{prefix}.{number}"
        content = fields.get("message.content")
        texts = [] if content is None else [_string(content, f"{where}.message.content")]
        parts: dict[int, str] = {}
        for rest, value in fields.items():
            found = _OI_TEXT.match(rest)
            if found:
                parts[int(found.group(1))] = _string(value, f"{where}.{rest}")
        texts += [parts[n] for n in sorted(parts)]
        message: Message = {
            "role": _role(fields.get("message.role"), f"{where}.message.role"),
            "content": "\n".join(t for t in texts if t),
        }
        _add_tool_calls(message, fields, _OI_CALL)
        out.append(message)
    return out


def _openllmetry(by_index: dict[int, dict[str, Any]], prefix: str) -> list[Message]:
    out = []
    for number in sorted(by_index):
        fields = by_index[number]
        where = f"{prefix}.{number}"
        content = fields.get("content")
        message: Message = {
            "role": _role(fields.get("role"), f"{where}.role"),
            "content": "" if content is None else _string(content, f"{where}.content"),
        }
        reason = fields.get("finish_reason")
        if isinstance(reason, str):
            message["finishReason"] = reason
        _add_tool_calls(message, fields, _LL_CALL)
        out.append(message)
    return out


def _add_tool_calls(message: Message, fields: dict[str, Any], pattern: re.Pattern) -> None:
    """`toolCalls` from a message's indexed attributes (`pattern`: number, then `name` or
    `arguments`), in their order."""
    calls: dict[int, dict[str, Any]] = {}
    for rest, value in fields.items():
        found = pattern.match(rest)
        if found:
            calls.setdefault(int(found.group(1)), {})[found.group(2)] = value
    if calls:
        message["toolCalls"] = [
            _call(calls[n].get("name"), calls[n].get("arguments")) for n in sorted(calls)
        ][:MAX_TOOL_CALLS]


# --- values -----------------------------------------------------------------------------


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Refused(f"{where} must be a string")
    return value


def _role(value: Any, where: str) -> str:
    if value is None:
        return "unknown"
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise Refused(f"{where}: a role is a string of 1 to 64 characters")
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        raise Refused("a message part is neither text nor JSON") from None


def _call(name: Any, arguments: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"name": name if isinstance(name, str) else ""}
    if arguments is not None:
        call["arguments"] = _as_text(arguments)
    return call
