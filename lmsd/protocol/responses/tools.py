"""Codex's tools as LM Studio takes them, and the way back for the model's calls.

LM Studio's ``/v1/responses`` takes only ``function`` (and ``mcp``) tools; Codex 0.171 also
sends ``namespace`` (nested functions), ``custom`` (apply_patch, a lark grammar),
``web_search`` and ``tool_search``. Namespaces are flattened to ``<ns>__<name>``, a custom
tool becomes a function with one required string ``input``, hosted tools are dropped. Each
upstream name maps back to how Codex knows the tool (:class:`ToolRef`): Codex runs a
namespaced tool only from ``function_call{name, namespace}`` and apply_patch only from a
``custom_tool_call`` (``codex-traffic/0.171/call-ns-*``, ``call-patch-*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ..failures import invalid
from ..pivot import FunctionTool

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
#: Hosted tools: no local implementation, so the model is not told of them.
DROPPED_TOOLS = frozenset({"web_search", "web_search_preview", "tool_search", "file_search",
                           "code_interpreter", "image_generation", "computer_use_preview",
                           "local_shell", "mcp", "web_search_2025_08_26",
                           "web_search_preview_2025_03_11"})
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class ToolRef:
    """How the client knows a tool the upstream knows by another name."""

    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


@dataclass
class ToolMap:
    """Upstream name <-> the client's tool, rebuilt from each request's ``tools``."""

    by_upstream: dict[str, ToolRef] = field(default_factory=dict)
    by_client: dict[tuple[str | None, str], str] = field(default_factory=dict)

    def add(self, ref: ToolRef) -> str:
        name = flat_name(ref.namespace, ref.name)
        if name in self.by_upstream:  # unique, even after shortening
            stem, n = name[:60], 2
            while f"{stem}_{n}" in self.by_upstream:
                n += 1
            name = f"{stem}_{n}"
        self.by_upstream[name] = ref
        self.by_client[(ref.namespace, ref.name)] = name
        return name

    def upstream_name(self, namespace: str | None, name: str) -> str:
        """The name a call the client echoes had upstream (also for a tool this request
        no longer lists, e.g. a compaction's ``tools: []``)."""
        return self.by_client.get((namespace, name)) or flat_name(namespace, name)

    def client_ref(self, upstream_name: str) -> ToolRef:
        """How the client knows the tool the model called (unknown names pass through:
        Codex answers ``unsupported call`` and goes on)."""
        return self.by_upstream.get(upstream_name) or ToolRef("function", upstream_name)


def flat_name(namespace: str | None, name: str) -> str:
    full = f"{namespace}__{name}" if namespace else name
    return _UNSAFE.sub("_", full)[:64]


def _description(tool: dict[str, Any], where: str) -> str:
    text = tool.get("description", "")
    if text is None:
        return ""
    if not isinstance(text, str):
        raise invalid(f"{where}.description: expected a string")
    return text


def _function(tool: dict[str, Any], where: str) -> tuple[str, str, dict[str, Any]]:
    name = tool.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise invalid(f"{where}.name: expected 1-64 letters, digits, '_' or '-'")
    parameters = tool.get("parameters")
    if parameters is None:
        parameters = EMPTY_PARAMETERS
    elif not isinstance(parameters, dict):
        raise invalid(f"{where}.parameters: expected a JSON schema object")
    return name, _description(tool, where), parameters


def _custom_parameters(tool: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    fmt = tool.get("format")
    note = "The whole input of the tool, as free text."
    if isinstance(fmt, dict) and isinstance(fmt.get("definition"), str):
        syntax = fmt.get("syntax") if isinstance(fmt.get("syntax"), str) else "grammar"
        note = (f"The whole input of the tool, as free text that follows this {syntax} "
                f"grammar:\n{fmt['definition']}")
    elif fmt is not None and not isinstance(fmt, dict):
        raise invalid(f"{where}.format: expected an object")
    schema = {"type": "object", "properties": {"input": {"type": "string"}},
              "required": ["input"], "additionalProperties": False}
    return note, schema


def convert_tools(tools: Any) -> tuple[tuple[FunctionTool, ...], ToolMap, list[str]]:
    """Codex's ``tools`` -> (function tools for the upstream, the map back, the types
    dropped)."""
    if tools is None:
        return (), ToolMap(), []
    if not isinstance(tools, list):
        raise invalid("tools: expected an array")
    out: list[FunctionTool] = []
    mapping, dropped = ToolMap(), []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise invalid(f"{where}: expected an object")
        kind = tool.get("type")
        if kind == "function":
            name, description, parameters = _function(tool, where)
            out.append(FunctionTool(mapping.add(ToolRef("function", name)), description,
                                    parameters))
        elif kind == "namespace":
            ns = tool.get("name")
            if not isinstance(ns, str) or not NAME.match(ns):
                raise invalid(f"{where}.name: expected 1-64 letters, digits, '_' or '-'")
            nested = tool.get("tools")
            if not isinstance(nested, list):
                raise invalid(f"{where}.tools: expected an array")
            for j, inner in enumerate(nested):
                inner_where = f"{where}.tools[{j}]"
                if not isinstance(inner, dict) or inner.get("type", "function") != "function":
                    raise invalid(f"{inner_where}: expected a function tool")
                name, description, parameters = _function(inner, inner_where)
                out.append(FunctionTool(mapping.add(ToolRef("function", name, ns)),
                                        description, parameters))
        elif kind == "custom":
            name = tool.get("name")
            if not isinstance(name, str) or not NAME.match(name):
                raise invalid(f"{where}.name: expected 1-64 letters, digits, '_' or '-'")
            note, schema = _custom_parameters(tool, where)
            description = _description(tool, where)
            out.append(FunctionTool(mapping.add(ToolRef("custom", name)),
                                    f"{description}\n\n{note}" if description else note,
                                    schema))
        elif isinstance(kind, str) and kind in DROPPED_TOOLS:
            dropped.append(kind)
        else:
            raise invalid(f"{where}.type: {kind!r} is not a tool type lmsd serves "
                          f"(function, namespace, custom; hosted tools are dropped)")
    return tuple(out), mapping, dropped
