"""Tool calls printed as text, as local models print them when the engine's parser misses
the call (issue 13): ``PrintedCall("qwen_xml", "Bash", {"command": "ls"})`` is a
:class:`Text` reply part whose text is that call, streamed in ``chunk_size`` pieces like
any text. The emulator itself knows nothing of the formats: it just streams the text."""

from __future__ import annotations

import json
from typing import Any

from .script import Text

_J = json.dumps


def _qwen_xml(name: str, args: dict[str, Any]) -> str:
    params = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


def _glm(name: str, args: dict[str, Any]) -> str:
    pairs = "".join(f"<arg_key>{k}</arg_key><arg_value>{v}</arg_value>"
                    for k, v in args.items())
    return f"<tool_call>{name}{pairs}</tool_call>"


def _lfm(name: str, args: dict[str, Any]) -> str:
    kwargs = ", ".join(f"{k}={_J(v)}" for k, v in args.items())
    return f"<|tool_call_start|>[{name}({kwargs})]<|tool_call_end|>"


def _invoke_xml(name: str, args: dict[str, Any]) -> str:
    params = "".join(f'<parameter name="{k}">{v}</parameter>' for k, v in args.items())
    return f'<invoke name="{name}">{params}</invoke>'


#: format name -> how a model prints a call in it
FORMATS = {
    "qwen_xml": _qwen_xml,
    "hermes_json": lambda n, a: f"<tool_call>\n{_J({'name': n, 'arguments': a})}\n</tool_call>",
    "glm": _glm,
    "harmony": lambda n, a: (f"<|channel|>commentary to=functions.{n} <|constrain|>json"
                             f"<|message|>{_J(a)}<|call|>"),
    "lfm_pythonic": _lfm,
    "tool_request": lambda n, a: f"[TOOL_REQUEST]{_J({'name': n, 'arguments': a})}"
                                 f"[END_TOOL_REQUEST]",
    "invoke_xml": _invoke_xml,
    "bare_json": lambda n, a: _J({"name": n, "arguments": a}),
}


def printed_call(fmt: str, name: str, args: dict[str, Any]) -> str:
    """The call as a model prints it in format ``fmt`` (a key of :data:`FORMATS`)."""
    return FORMATS[fmt](name, args)


def PrintedCall(fmt: str, name: str, args: dict[str, Any], *, before: str = "",
                after: str = "") -> Text:
    """A text reply part that is the call printed in ``fmt``, with prose around it."""
    return Text(before + printed_call(fmt, name, args) + after)
