"""The repair corpus (issue 13): calls printed as text, in the shapes the cited threads show,
and text that must stay text byte for byte.

``POSITIVES``: (id, text, calls, visible text) where calls are (format, name, arguments).
``NEGATIVES``: (id, text). ``REASONING``: markup inside reasoning events.
"""

from __future__ import annotations

import json
from typing import Any

from lmsd.protocol.pivot import FunctionTool

TOOLS = (
    FunctionTool("Bash", "Run a command", {
        "type": "object", "required": ["command"],
        "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}}}),
    FunctionTool("Read", "Read a file", {
        "type": "object", "required": ["file_path"],
        "properties": {"file_path": {"type": "string"}, "offset": {"type": "integer"},
                       "limit": {"type": "number"}}}),
    FunctionTool("Edit", "Edit a file", {
        "type": "object", "required": ["file_path", "old_string", "new_string"],
        "properties": {"file_path": {"type": "string"}, "old_string": {"type": "string"},
                       "new_string": {"type": "string"}, "replace_all": {"type": "boolean"}}}),
    FunctionTool("TodoWrite", "Write todos", {
        "type": "object", "required": ["todos"],
        "properties": {"todos": {"type": "array"}, "meta": {"type": "object"}}}),
)

Args = dict[str, Any]
CALLS: list[tuple[str, Args]] = [
    ("Bash", {"command": "ls -la"}),
    ("Read", {"file_path": "/src/app.py", "offset": 10, "limit": 2.5}),
    ("Edit", {"file_path": "a.py", "old_string": "def f():\n    return 1",
              "new_string": "def f():\n    return 2  # <b> & ü", "replace_all": True}),
    ("TodoWrite", {"todos": [{"content": "fix", "status": "pending"}], "meta": {"n": 1}}),
    ("Bash", {"command": "grep -rn \"tool_call\" src | head", "timeout": 30}),
]


def _xml(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def qwen(name: str, args: Args, wrap: str = "") -> str:
    params = "".join(f"<parameter={k}>\n{_xml(v)}\n</parameter>\n" for k, v in args.items())
    body = f"<function={name}>\n{params}</function>"
    if wrap == "wrap":
        return f"<tool_call>\n{body}\n</tool_call>"
    return f"{body}\n</tool_call>" if wrap == "stray" else body


def hermes(name: str, args: Args, ws: str = "\n") -> str:
    return f"<tool_call>{ws}{json.dumps({'name': name, 'arguments': args})}{ws}</tool_call>"


def glm(name: str, args: Args, ws: str = "\n") -> str:
    pairs = "".join(f"<arg_key>{k}</arg_key>{ws}<arg_value>{_xml(v)}</arg_value>{ws}"
                    for k, v in args.items())
    return f"<tool_call>{name}{ws}{pairs}</tool_call>"


def harmony(name: str, args: Args, start: bool = False) -> str:
    head = "<|start|>assistant" if start else ""
    return (f"{head}<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
            f"{json.dumps(args)}<|call|>")


def _py(v: object) -> str:
    if isinstance(v, bool):
        return str(v)
    return json.dumps(v, ensure_ascii=False)


def lfm(*calls: tuple[str, Args]) -> str:
    inner = ", ".join(f"{n}({', '.join(f'{k}={_py(v)}' for k, v in a.items())})"
                      for n, a in calls)
    return f"<|tool_call_start|>[{inner}]<|tool_call_end|>"


def tool_request(name: str, args: Args, ws: str = "") -> str:
    body = json.dumps({"name": name, "arguments": args})
    return f"[TOOL_REQUEST]{ws}{body}{ws}[END_TOOL_REQUEST]"


def invoke(name: str, args: Args) -> str:
    params = "".join(f'<parameter name="{k}">{_xml(v)}</parameter>\n' for k, v in args.items())
    return f'<invoke name="{name}">\n{params}</invoke>'


def function_calls(*calls: tuple[str, Args]) -> str:
    return "<function_calls>\n" + "\n".join(invoke(n, a) for n, a in calls) + \
        "\n</function_calls>"


Positive = tuple[str, str, list[tuple[str, str, Args]], str]
POSITIVES: list[Positive] = []


def _add(fmt: str, render: Any) -> None:
    """Eight shapes per format: alone, prose around, two calls, odd whitespace, each tool."""
    c0, c1, c2, c3, c4 = CALLS
    shapes = [
        ("alone", [c0], ["", ""]),
        ("before", [c1], ["I'll read the file first.\n\n", ""]),
        ("around", [c2], ["Fixing it:\n", "\nThat should do it."]),
        ("two", [c0, c4], ["Two checks.\n", "\n\nand then\n", "\nDone."]),
        ("three", [c3, c0, c1], ["", "", " ", "\n"]),
        ("ws", [c4], ["\n\n   ", "   \n\n\n"]),
        ("typed", [c3], ["Plan:\r\n", "\r\n"]),
        ("unicode", [("Bash", {"command": "echo 'héllo 世界' > <out>.txt"})], ["Voilà — ", " ✓"]),
    ]
    for shape, calls, prose in shapes:
        text = prose[0] + "".join(render(n, a) + prose[i + 1] for i, (n, a) in enumerate(calls))
        expected = [(fmt, n, a) for n, a in calls]
        POSITIVES.append((f"{fmt}-{shape}", text, expected, "".join(prose)))


_add("qwen_xml", qwen)
_add("qwen_xml", lambda n, a: qwen(n, a, "wrap"))
_add("qwen_xml", lambda n, a: qwen(n, a, "stray"))
_add("hermes_json", hermes)
_add("glm", glm)
_add("harmony", harmony)
_add("lfm_pythonic", lambda n, a: lfm((n, a)))
_add("tool_request", tool_request)
_add("invoke_xml", invoke)
POSITIVES[:] = [(f"{i:03d}-{name}", *rest) for i, (name, *rest) in enumerate(POSITIVES)]
POSITIVES += [
    ("hermes-compact", hermes("Bash", {"command": "ls"}, ws=""), [
        ("hermes_json", "Bash", {"command": "ls"})], ""),
    ("hermes-parameters", '<tool_call>{"name": "Bash", "parameters": {"command": "ls"}}'
     "</tool_call>", [("hermes_json", "Bash", {"command": "ls"})], ""),
    ("hermes-string-args", '<tool_call>{"name": "Bash", "arguments": "{\\"command\\": '
     '\\"ls\\"}"}</tool_call>', [("hermes_json", "Bash", {"command": "ls"})], ""),
    ("glm-tight", glm("Read", {"file_path": "x", "offset": 3}, ws=""), [
        ("glm", "Read", {"file_path": "x", "offset": 3})], ""),
    ("harmony-start", "Ok.\n" + harmony("Bash", {"command": "ls"}, start=True), [
        ("harmony", "Bash", {"command": "ls"})], "Ok.\n"),
    ("lfm-multi", "x " + lfm(CALLS[0], CALLS[1]) + " y", [
        ("lfm_pythonic", *CALLS[0]), ("lfm_pythonic", *CALLS[1])], "x  y"),
    ("lfm-json-names", '<|tool_call_start|>[Edit(file_path="a", old_string="b", '
     'new_string="c", replace_all=true)]<|tool_call_end|>', [("lfm_pythonic", "Edit", {
         "file_path": "a", "old_string": "b", "new_string": "c", "replace_all": True})], ""),
    ("tool-request-ws", tool_request("Bash", {"command": "ls"}, ws="\n  "), [
        ("tool_request", "Bash", {"command": "ls"})], ""),
    ("invoke-wrapped", "Sure.\n" + function_calls(CALLS[0], CALLS[1]) + "\n", [
        ("invoke_xml", *CALLS[0]), ("invoke_xml", *CALLS[1])], "Sure.\n\n"),
    ("invoke-stray", invoke(*CALLS[0]) + "\n</function_calls>", [("invoke_xml", *CALLS[0])],
     ""),
    ("qwen-unclosed-param", "<function=Bash><parameter=command>ls\n<parameter=timeout>5\n"
     "</function>", [("qwen_xml", "Bash", {"command": "ls", "timeout": 5})], ""),
    ("qwen-function-unclosed", "<tool_call>\n<function=Bash>\n<parameter=command>\nls\n"
     "</parameter>\n</tool_call> ok", [("qwen_xml", "Bash", {"command": "ls"})], " ok"),
    ("harmony-after-stray-channel", "<|channel|>" + "x" * 250 + harmony(*CALLS[0]), [
        ("harmony", *CALLS[0])], "<|channel|>" + "x" * 250),
    ("qwen-after-inline-code", "Run `ls` first:\n" + qwen(*CALLS[0]), [("qwen_xml", *CALLS[0])],
     "Run `ls` first:\n"),
    ("qwen-after-unpaired-backtick", "it`s done\n" + qwen(*CALLS[0]), [("qwen_xml", *CALLS[0])],
     "it`s done\n"),
    ("qwen-fence-closed-before", "```\nx\n```\n" + qwen(*CALLS[0]), [("qwen_xml", *CALLS[0])],
     "```\nx\n```\n"),
]
for i, (n, a) in enumerate(CALLS):
    bare = {"name": n, "arguments": a}
    POSITIVES += [
        (f"bare-{i}", json.dumps(bare), [("bare_json", n, a)], ""),
        (f"bare-indent-{i}", "\n  " + json.dumps(bare, indent=2) + "\n", [("bare_json", n, a)],
         ""),
    ]
POSITIVES += [
    ("bare-parameters", '{"name": "Bash", "parameters": {"command": "ls"}}', [
        ("bare_json", "Bash", {"command": "ls"})], ""),
    ("bare-string-args", '{"name": "Bash", "arguments": "{\\"command\\": \\"ls\\"}"}', [
        ("bare_json", "Bash", {"command": "ls"})], ""),
]

_Q = qwen(*CALLS[0])
NEGATIVES: list[tuple[str, str]] = [
    ("prose-tag", "To call a tool, the model prints `<tool_call>` followed by JSON."),
    ("prose-function", "Use a <function=NAME> tag, then <parameter=KEY>VALUE</parameter>."),
    ("fence-qwen", f"Example:\n```xml\n{_Q}\n```\nThat is the format."),
    ("fence-hermes", f"```\n{hermes(*CALLS[0])}\n```"),
    ("fence-bare", "```json\n" + json.dumps({"name": "Bash", "arguments": {"command": "ls"}})
     + "\n```"),
    ("fence-unclosed", f"```\n{_Q}\n{harmony(*CALLS[0])}"),
    ("fence-lfm", f"Like this: ```{lfm(CALLS[0])}``` ok"),
    ("inline-code-qwen", f"The model printed `{_Q}` instead of calling."),
    ("inline-code-hermes", f"Send `{hermes(*CALLS[0])}` to run it."),
    ("think-inline", f"<think>maybe {_Q}</think>I will not run anything."),
    ("undeclared-qwen", qwen("rm_everything", {"path": "/"})),
    ("undeclared-hermes", hermes("Delete", {"path": "/"})),
    ("undeclared-glm", glm("Delete", {"path": "/"})),
    ("undeclared-harmony", harmony("browser.search", {"q": "x"})),
    ("undeclared-lfm", lfm(("Delete", {"path": "/"}))),
    ("undeclared-request", tool_request("Delete", {"path": "/"})),
    ("undeclared-invoke", invoke("Delete", {"path": "/"})),
    ("undeclared-bare", json.dumps({"name": "Delete", "arguments": {"path": "/"}})),
    ("json-person", '{"name": "Alice", "age": 3}'),
    ("json-no-arguments", '{"name": "Bash", "description": "runs a shell"}'),
    ("json-extra-key", '{"name": "Bash", "arguments": {"command": "ls"}, "note": 1}'),
    ("json-list", json.dumps([{"name": "Bash", "arguments": {"command": "ls"}}])),
    ("json-then-prose", json.dumps({"name": "Bash", "arguments": {"command": "ls"}})
     + " is what a call looks like."),
    ("prose-then-json", "A call: " + json.dumps({"name": "Bash", "arguments": {"command": "l"}})),
    ("truncated-qwen", "<function=Bash><parameter=command>ls"),
    ("truncated-hermes", '<tool_call>{"name": "Bash", "arguments": {"command": "ls"}}'),
    ("truncated-harmony", "<|channel|>commentary to=functions.Bash <|constrain|>json"
     '<|message|>{"command": "ls"}'),
    ("truncated-lfm", '<|tool_call_start|>[Bash(command="ls")]'),
    ("truncated-invoke", '<invoke name="Bash"><parameter name="command">ls</parameter>'),
    ("missing-required-qwen", qwen("Bash", {"timeout": 3})),
    ("missing-required-invoke", invoke("Edit", {"file_path": "a"})),
    ("missing-required-bare", '{"name": "Read", "arguments": {}}'),
    ("bad-json-hermes", '<tool_call>{"name": "Bash", "arguments": {command: ls}}</tool_call>'),
    ("bad-glm-body", "<tool_call>Bash<b>bold</b></tool_call>"),
    ("lfm-positional", '<|tool_call_start|>[Bash("ls")]<|tool_call_end|>'),
    ("lfm-not-literal", "<|tool_call_start|>[Bash(command=os.getcwd())]<|tool_call_end|>"),
    ("harmony-analysis", "<|channel|>analysis<|message|>I should list files.<|end|>Sure."),
    ("html", '<div class="invoke"><invoke>x</invoke></div> <tool_call> & </tool_call>'),
    ("code-unfenced", 'print("<tool_call>")\nif a < b and c[0] > d: pass  # [TOOL_REQUEST'),
    ("markdown", "[TOOL_REQUEST] is a marker; see [docs](http://x) and [Bash(command=1)]."),
    ("lone-lt", "a <"),
    ("blank", "  \n "),
    ("empty", ""),
]

#: Markup inside reasoning is never touched (LM Studio #1592).
REASONING = [_Q, hermes(*CALLS[0]), harmony(*CALLS[0])]
