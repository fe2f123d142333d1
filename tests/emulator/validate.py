"""Strict (zod-like) validation of POST /v1/responses bodies, as LM Studio does it.

What Codex CLI sends (codex-traffic 0.171; unverified against a real LM Studio unless an
issue is cited) is accepted: ``developer`` messages, client ``id``/``status`` on items,
``store: false``, ``reasoning``, and the top-level ``include``, ``prompt_cache_key`` and
``client_metadata`` (ignored). Rejected as LM Studio does: tools other than ``function`` and
``mcp`` (lmstudio-bug-tracker #1810, #1812), and ``text`` without ``format`` (#1576).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .render import Item

TOP_LEVEL_KEYS = frozenset(
    {
        "model", "input", "instructions", "previous_response_id", "tools", "tool_choice",
        "stream", "store", "max_output_tokens", "temperature", "top_p", "reasoning",
        "parallel_tool_calls", "text", "metadata", "include", "prompt_cache_key",
        "client_metadata",
    }
)  # fmt: skip
TOOL_CHOICES = ("none", "auto", "required")
INVALID_INPUT = "Invalid type for 'input'."

_ITEM_KEYS = {
    "message": {"type", "id", "role", "content", "status"},
    "function_call": {"type", "id", "call_id", "name", "arguments", "status"},
    "function_call_output": {"type", "id", "call_id", "output", "status"},
    "reasoning": {"type", "id", "summary", "content", "encrypted_content", "status"},
}
_PART_KEYS = {
    "input_text": {"type", "text"},
    "output_text": {"type", "text", "annotations", "logprobs"},
    "input_image": {"type", "image_url", "detail"},
}
_ROLES = ("user", "assistant", "system", "developer")
_FUNCTION_TOOL_KEYS = {"type", "name", "description", "parameters", "strict"}


class ApiError(Exception):
    """An error answered as {"error": {message, type, param, code}}; `detail` is log-only."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        detail: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.payload = payload  # a server's own body shape, sent as is
        self.message = message
        self.status = status
        self.param = param
        self.code = code
        self.detail = detail or message

    @property
    def type(self) -> str:
        return "server_error" if self.status >= 500 else "invalid_request_error"

    def body(self) -> dict[str, Any]:
        if self.payload is not None:
            return self.payload
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(value), "object"
    )


def _expect(body: dict[str, Any], key: str, kinds: tuple[type, ...], label: str) -> None:
    value = body.get(key)
    if value is None:
        return
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        raise ApiError(
            f"Expected {label}, received {_type_name(value)}", param=key, code="invalid_type"
        )


def validate_request(body: Any) -> None:
    """Raise ApiError (HTTP 400) unless `body` is a request LM Studio would accept."""
    if not isinstance(body, dict):
        raise ApiError(f"Expected object, received {_type_name(body)}", code="invalid_type")
    unknown = sorted(set(body) - TOP_LEVEL_KEYS)
    if unknown:
        raise ApiError(
            "Unrecognized key(s) in object: " + ", ".join(f"'{k}'" for k in unknown),
            param=unknown[0],
            code="unrecognized_keys",
        )
    if not isinstance(body.get("model"), str):
        raise ApiError("Required: 'model' must be a string", param="model", code="invalid_type")
    if "input" not in body or not isinstance(body["input"], str | list):
        raise ApiError(
            "Required: 'input' must be a string or an array", param="input", code="invalid_type"
        )
    for key in ("instructions", "previous_response_id"):
        _expect(body, key, (str,), "string")
    for key in ("stream", "store", "parallel_tool_calls"):
        _expect(body, key, (bool,), "boolean")
    for key in ("temperature", "top_p"):
        _expect(body, key, (int, float), "number")
    for key in ("reasoning", "text", "metadata"):
        _expect(body, key, (dict,), "object")
    _expect(body, "max_output_tokens", (int,), "integer")
    if isinstance(body.get("text"), dict) and "format" not in body["text"]:
        # LM Studio 0.4.5 (lmstudio-bug-tracker #1576): `text: {}` or Codex's
        # `text: {verbosity}` for a catalog model.
        raise ApiError("Required", param="text.format", code="missing_required_parameter")
    if body.get("max_output_tokens") is not None and body["max_output_tokens"] < 1:
        raise ApiError("Number must be greater than 0", param="max_output_tokens", code="too_small")
    _validate_tool_choice(body.get("tool_choice"))
    _validate_tools(body.get("tools"))
    if isinstance(body["input"], list):
        for index, item in enumerate(body["input"]):
            _validate_item(index, item)


def _validate_tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise ApiError(
                f"Invalid enum value. Expected 'none' | 'auto' | 'required', received '{choice}'",
                param="tool_choice",
                code="invalid_enum_value",
            )
        return
    raise ApiError(
        "Invalid input: tool_choice must be 'none' | 'auto' | 'required'",
        param="tool_choice",
        code="invalid_union",
    )


def _validate_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise ApiError(
            f"Expected array, received {_type_name(tools)}", param="tools", code="invalid_type"
        )
    for n, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in ("function", "mcp"):
            # LM Studio 0.4.11/0.4.12 on Codex's `namespace` and other tools
            # (lmstudio-bug-tracker #1810, #1812). 0.3.39-0.4.0 said "Invalid discriminator
            # value. Expected 'function' | 'mcp'" (code invalid_union_discriminator, #1383).
            raise ApiError("Invalid", param=f"tools.{n}.type", code="invalid_string")
        assert isinstance(tool, dict)
        if kind == "mcp":
            if not isinstance(tool.get("server_label"), str):
                raise ApiError("Required", param=f"tools.{n}.server_label", code="invalid_type")
            continue
        unknown = sorted(set(tool) - _FUNCTION_TOOL_KEYS)
        if unknown:
            raise ApiError(
                "Unrecognized key(s) in object: " + ", ".join(f"'{k}'" for k in unknown),
                param=f"tools.{n}",
                code="unrecognized_keys",
            )
        if not isinstance(tool.get("name"), str):
            raise ApiError("Required", param=f"tools.{n}.name", code="invalid_type")
        if tool.get("parameters") is not None and not isinstance(tool["parameters"], dict):
            raise ApiError("Expected object", param=f"tools.{n}.parameters", code="invalid_type")
        if tool.get("description") is not None and not isinstance(tool["description"], str):
            raise ApiError("Expected string", param=f"tools.{n}.description", code="invalid_type")


def _bad_item(param: str, detail: str) -> ApiError:
    return ApiError(INVALID_INPUT, param=param, code="invalid_union", detail=detail)


def _validate_item(index: int, item: Any) -> None:
    where = f"input.{index}"
    if not isinstance(item, dict):
        raise _bad_item(where, "item is not an object")
    kind = item.get("type", "message" if "role" in item else None)
    allowed = _ITEM_KEYS.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        raise _bad_item(f"{where}.type", f"unknown input item type {kind!r}")
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise _bad_item(where, f"unrecognized keys {unknown} in {kind} item")
    if kind == "message":
        _validate_message(where, item)
    elif kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            if not isinstance(item.get(key), str):
                raise _bad_item(f"{where}.{key}", f"function_call.{key} must be a string")
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise _bad_item(f"{where}.call_id", "function_call_output.call_id must be a string")
        if not isinstance(item.get("output"), str):
            raise _bad_item(
                f"{where}.output",
                "function_call_output.output must be a string, got "
                + _type_name(item.get("output")),
            )
    elif kind == "reasoning":
        for key in ("summary", "content"):
            if item.get(key) is not None and not isinstance(item[key], list):
                raise _bad_item(f"{where}.{key}", f"reasoning.{key} must be an array")


def _validate_message(where: str, item: dict[str, Any]) -> None:
    role = item.get("role")
    if role not in _ROLES:
        raise _bad_item(f"{where}.role", f"invalid message role {role!r}")
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad_item(f"{where}.content", "message content must be a string or an array")
    kinds: set[str] = set()
    for j, part in enumerate(content):
        pwhere = f"{where}.content.{j}"
        ptype = part.get("type") if isinstance(part, dict) else None
        allowed = _PART_KEYS.get(ptype) if isinstance(ptype, str) else None
        if allowed is None or (ptype == "output_text" and role != "assistant"):
            raise _bad_item(pwhere, f"content part type {ptype!r} not allowed for role {role}")
        assert isinstance(part, dict)
        unknown = sorted(set(part) - allowed)
        if unknown:
            raise _bad_item(pwhere, f"unrecognized keys {unknown} in {ptype} part")
        if ptype == "input_image":
            _validate_image_url(pwhere, part.get("image_url"))
            kinds.add("image")
        else:
            if not isinstance(part.get("text"), str):
                raise _bad_item(f"{pwhere}.text", f"{ptype}.text must be a string")
            kinds.add("text")
    if kinds == {"text", "image"}:
        raise _bad_item(
            f"{where}.content",
            "text and image parts mixed in one message (LM Studio issue #1106)",
        )


def _validate_image_url(where: str, url: Any) -> None:
    if not isinstance(url, str):
        raise _bad_item(f"{where}.image_url", "input_image.image_url must be a string")
    if not url.startswith("data:"):
        raise _bad_item(f"{where}.image_url", "only base64 data URLs are supported")
    header, sep, _ = url.partition(",")
    if not sep or not header.startswith("data:image/") or not header.endswith(";base64"):
        raise _bad_item(f"{where}.image_url", "expected data:image/<type>;base64,<data>")
    if header.startswith("data:image/webp"):
        raise _bad_item(f"{where}.image_url", "image/webp is not supported")


def _check_call_ids(context: Sequence[Item]) -> None:
    calls = {item.get("call_id") for item in context if item.get("type") == "function_call"}
    for item in context:
        if item.get("type") == "function_call_output" and item.get("call_id") not in calls:
            raise ApiError(
                f"No tool call found for function call output with call_id "
                f"'{item.get('call_id')}'.",
                param="input",
            )


def _has_image(item: Item) -> bool:
    content = item.get("content")
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") == "input_image" for p in content
    )
