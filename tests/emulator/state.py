"""Emulator state: stored responses, prefix cache, request log, the plan of each request
(its models live in models.py, its tokenizer and prompt in render.py)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from .loading import Load
from .models import ModelSpec, default_models
from .overflow import OverflowMode, OverflowWording, overflow_error
from .render import Item, count_tokens, render_context, tokenize
from .script import Call, Fault, Reply, Text
from .validate import ApiError, _check_call_ids, _has_image, validate_request

UsageMode = Literal["lmstudio", "openai"]
MessagesFlavor = Literal["llama_server", "anthropic", "ollama", "lmstudio", "none"]
InstructionsMode = Literal["inherit", "replace"]
Outcome = Literal["completed", "incomplete", "failed", "error", "dropped", "cancelled", "rejected"]
ScriptEntry = Reply | Callable[["RequestRecord"], Reply]

DEFAULT_TEXT = "Hello from the LM Studio emulator."
DEFAULT_BASH = Call("Bash", {"command": "echo hello-from-tool", "description": "Print a greeting"})
DEFAULT_EXEC = Call("exec_command", {"cmd": "echo hello-from-tool"})  # Codex CLI's shell tool



@dataclass
class StoredResponse:
    """A stored response: the full context it answered, its output, and its instructions."""

    id: str
    model: str
    context_items: list[Item]
    output: list[Item]
    instructions: str | None
    response: dict[str, Any]


@dataclass
class RequestRecord:
    """One HTTP request seen by the emulator (all paths; generation fields for /v1/responses)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    model: str | None = None
    stream: bool = False
    previous_response_id: str | None = None
    new_items: list[Item] = field(default_factory=list)
    context_items: list[Item] = field(default_factory=list)
    instructions_used: str | None = None
    tools: list[Any] = field(default_factory=list)
    input_tokens: int = 0
    cached_tokens: int = 0
    status: int | None = None
    outcome: Outcome | None = None
    response_id: str | None = None
    fault: Fault | None = None
    reply: Reply | None = None
    error: dict[str, Any] | None = None
    done: trio.Event = field(default_factory=trio.Event)
    started: float = field(default_factory=trio.current_time)
    finished: float | None = None


@dataclass
class Plan:
    """A validated /v1/responses request, ready to generate."""

    record: RequestRecord
    body: dict[str, Any]
    model: ModelSpec
    context_tokens: list[str]
    cached: int
    overflow: ApiError | None = None

    @property
    def uncached(self) -> int:
        return len(self.context_tokens) - self.cached


class Emulator:
    """Scriptable in-memory LM Studio. Serve it with `serve_emulator(nursery, emu)`."""

    def __init__(
        self,
        models: Sequence[ModelSpec] | None = None,
        *,
        usage_mode: UsageMode = "lmstudio",
        instructions_mode: InstructionsMode = "inherit",
        overflow_mode: OverflowMode = "http400",
        overflow_wording: OverflowWording = "lmstudio",
        prefill_seconds_per_token: float = 0.0,
        token_delay: float = 0.0,
        chunk_size: int = 4,
        jit: bool = False,
        jit_context_length: int = 4096,
    ) -> None:
        self.models: dict[str, ModelSpec] = {m.key: m for m in (models or default_models())}
        self.usage_mode = usage_mode
        self.instructions_mode = instructions_mode
        self.overflow_mode = overflow_mode
        self.overflow_wording = overflow_wording
        self.prefill_seconds_per_token = prefill_seconds_per_token
        self.token_delay = token_delay
        self.chunk_size = chunk_size
        self.load_delay = 0.0  # seconds a load takes (REST or JIT: loading.py)
        #: on: a request naming a downloaded, unloaded model loads it (LM Studio's JIT load)
        self.jit = jit
        self.jit_context_length = jit_context_length  # the context a JIT load gives it
        self.jit_loading: dict[str, trio.Event] = {}  # JIT loads under way, by model key
        self.loads: list[Load] = []  # every load that completed (REST and JIT)
        #: set: POST /api/v1/models/load also waits for it (a test holds a reload open)
        self.load_gate: trio.Event | None = None
        #: set: POST /v1/messages/count_tokens waits for it (a tokenizer held by a busy engine)
        self.count_gate: trio.Event | None = None
        self.fail_loads = 0  # how many of the next loads fail with HTTP 500
        self.stateless = False  # refuse previous_response_id, as llama.cpp's server does
        #: On a chained request, LM Studio as seen in the field: its cache holds the stored
        #: response's context, and the instructions and tools resent with the request are
        #: prefilled (and reported) again: cached is at most the stored context.
        self.chained_resends_prefilled = False
        self.lmstudio_api = True  # off: no /api/* or greeting, as llama-server or vLLM
        # on: llama.cpp's llama-server: answers GET /props, and its /v1/responses says
        # "completed" when it stops at max_output_tokens
        self.llama_server = False
        #: which server /v1/messages speaks like (``messages.py``)
        self.messages_flavor: MessagesFlavor = "llama_server"
        self.api_key: str | None = None  # require this API token (None: auth off)
        #: how many requests pass clean before the queued faults apply (a failing 2nd turn)
        self.faults_after = 0
        #: the last queued fault applies to every request after it (counting a client's resends)
        self.fault_forever = False
        #: how /v1/models names the owner; llama-cpp-python's server says "me"
        self.owned_by = "organization_owner"
        #: llama-cpp-python's one lock around /v1/models and /v1/chat/completions:
        #: "interrupt" ends the running chat stream with a bare [DONE] (no finish_reason)
        #: when another request waits (its default interrupt_requests), "queue" makes
        #: the other request wait (``--interrupt_requests false``); None: no lock.
        self.one_at_a_time: Literal["interrupt", "queue"] | None = None
        self.engine_lock = trio.Semaphore(1)
        self.waiting = 0  # requests waiting for engine_lock
        self.interrupted = 0  # chat streams ended by another request
        self.unfinished_streams = 0  # the next N chat streams: role chunk, then [DONE]
        self.url: str | None = None  # set by serve_emulator
        self.log: list[RequestRecord] = []
        self.responses: dict[str, StoredResponse] = {}
        self.prefix_cache: dict[str, list[str]] = {}
        self._replies: deque[ScriptEntry] = deque()
        self._faults: deque[Fault] = deque()

    # -- scripting -------------------------------------------------------------------------

    def script(self, *replies: ScriptEntry) -> None:
        """Queue replies (or callables RequestRecord -> Reply), used in order."""
        self._replies.extend(replies)

    def inject(self, *faults: Fault) -> None:
        """Queue faults, one per /v1/responses request that passes validation."""
        self._faults.extend(faults)

    @property
    def pending_replies(self) -> int:
        return len(self._replies)

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    @property
    def generations(self) -> list[RequestRecord]:
        """The log restricted to POST /v1/responses."""
        return [r for r in self.log if r.path == "/v1/responses"]

    @property
    def messages(self) -> list[RequestRecord]:
        """The log restricted to POST /v1/messages."""
        return [r for r in self.log if r.path == "/v1/messages"]

    def cached_prefix(self, model_key: str, tokens: list[str]) -> int:
        """How many of ``tokens`` the model's prefix cache holds: the common start with
        the last prompt, less one (llama.cpp always re-evaluates the last prompt token)."""
        common = 0
        for a, b in zip(self.prefix_cache.get(model_key, []), tokens, strict=False):
            if a != b:
                break
            common += 1
        return min(common, max(len(tokens) - 1, 0))

    def wipe_history(self) -> None:
        """Forget every stored response (LM Studio restarted or lost its history)."""
        self.responses.clear()

    def count_tokens(
        self,
        items: Iterable[Item] = (),
        *,
        instructions: str | None = None,
        tools: Sequence[Any] = (),
    ) -> int:
        """Tokens in a context, as counted for `input_tokens`."""
        return count_tokens(items, instructions=instructions, tools=tools)

    # -- model management ------------------------------------------------------------------

    def load_model(self, key: str, context_length: int | None = None) -> ModelSpec:
        """(Re)load a model, optionally with a new context length; clears its prefix cache."""
        model = self.models.get(key)
        if model is None:
            raise ApiError(
                f"Model '{key}' not found", status=404, param="model", code="model_not_found"
            )
        if context_length is not None:
            if not isinstance(context_length, int) or not (
                0 < context_length <= model.max_context_length
            ):
                raise ApiError(
                    f"context_length must be between 1 and {model.max_context_length}",
                    param="context_length",
                )
            model.context_length = context_length
        model.loaded = True
        self.prefix_cache.pop(key, None)
        return model

    def unload_model(self, key: str) -> None:
        """Unload a model (its instance id is its key); requests for it then get 404."""
        model = self.models.get(key)
        if model is None or not model.loaded:
            raise ApiError(
                f"No loaded model instance with id '{key}'",
                status=404,
                param="instance_id",
                code="model_not_found",
            )
        model.loaded, model.loaded_by = False, None
        self.prefix_cache.pop(key, None)

    # -- request handling (used by app.py) -------------------------------------------------

    def plan(self, record: RequestRecord, body: Any) -> Plan:
        """Validate a /v1/responses body and rebuild its full context; raise ApiError."""
        validate_request(body)
        record.model = body["model"]
        record.stream = bool(body.get("stream"))
        model = self.models.get(body["model"])
        if model is None or not model.loaded:
            raise ApiError(
                f"Model '{body['model']}' not found",
                status=404,
                param="model",
                code="model_not_found",
            )
        raw = body["input"]
        new_items: list[Item] = (
            [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else raw
        )
        record.new_items = new_items
        record.previous_response_id = prev_id = body.get("previous_response_id")
        history: list[Item] = []
        instructions = body.get("instructions")
        if prev_id is not None and self.stateless:
            raise ApiError(  # llama.cpp's /v1/responses
                "This server does not support 'previous_response_id'",
                param="previous_response_id", code="unsupported_parameter")
        if prev_id is not None:
            prev = self.responses.get(prev_id)
            if prev is None:
                raise ApiError(
                    f"Previous response with id '{prev_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = prev.context_items + prev.output
            if instructions is None and self.instructions_mode == "inherit":
                instructions = prev.instructions
        record.context_items = context = history + new_items
        record.instructions_used = instructions
        record.tools = tools = list(body.get("tools") or [])
        _check_call_ids(context)
        if not model.vision and any(_has_image(item) for item in context):
            raise ApiError("Model does not support images. Please use a model that does.")
        tokens = tokenize(render_context(context, instructions, tools))
        cached = self.cached_prefix(model.key, tokens)
        if prev_id is not None and self.chained_resends_prefilled:
            cached = min(cached, len(tokenize(render_context(history))))
        record.input_tokens, record.cached_tokens = len(tokens), cached
        plan = Plan(record, body, model, tokens, cached)
        if len(tokens) > model.context_length:
            overflow = self.overflow(len(tokens), model.context_length)
            if not self.overflow_in_stream or not record.stream:
                raise overflow
            plan.overflow = overflow
        return plan

    def overflow(self, n: int, m: int) -> ApiError:
        """The overflow error in the configured wording (HTTP 500 in ``http500`` mode)."""
        return overflow_error(self.overflow_wording, n, m,
                              500 if self.overflow_mode == "http500" else 400)

    @property
    def overflow_in_stream(self) -> bool:
        """Is an overflow reported inside a 200 stream (not as an HTTP status)?"""
        return self.overflow_mode in ("stream_error", "response_failed")

    def next_fault(self) -> Fault | None:
        if self.faults_after > 0:  # this request is one of the clean ones before the faults
            self.faults_after -= 1
            return None
        if not self._faults:
            return None
        fault = self._faults[0]
        if self.fault_forever and len(self._faults) == 1:
            return fault  # the last fault repeats: every later request fails the same way
        return self._faults.popleft()

    def next_reply(self, record: RequestRecord) -> Reply:
        """The next scripted reply, or the default policy when the script is empty."""
        if self._replies:
            entry = self._replies.popleft()
            reply = entry if isinstance(entry, Reply) else entry(record)
        else:
            reply = default_reply(record.context_items, record.tools)
        record.reply = reply
        return reply

    def usage(self, plan: Plan, output: list[Item]) -> dict[str, Any]:
        """Usage for `output`; also makes context + output the model's prefix cache."""
        out_tokens = tokenize(render_context(output))
        reasoning = sum(
            len(tokenize(part["text"]))
            for item in output
            if item["type"] == "reasoning"
            for part in item["content"]
        )
        self.prefix_cache[plan.model.key] = plan.context_tokens + out_tokens
        if self.usage_mode == "openai":
            input_tokens, cached = len(plan.context_tokens), plan.cached
        else:  # LM Studio bug lms#553: uncached tokens only, cached always 0
            input_tokens, cached = plan.uncached, 0
        return {
            "input_tokens": input_tokens,
            "output_tokens": len(out_tokens),
            "total_tokens": input_tokens + len(out_tokens),
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens_details": {"reasoning_tokens": reasoning},
        }

    def store(self, plan: Plan, response: dict[str, Any]) -> None:
        """Remember a finished response unless the request said store: false."""
        if plan.body.get("store", True) is False:
            return
        record = plan.record
        self.responses[response["id"]] = StoredResponse(
            id=response["id"],
            model=plan.model.key,
            context_items=list(record.context_items),
            output=list(response["output"]),
            instructions=record.instructions_used,
            response=response,
        )


def default_reply(context: Sequence[Item], tools: Sequence[Any]) -> Reply:
    """Policy used when nothing is scripted (drives Claude Code and Codex end-to-end runs)."""
    last = context[-1] if context else {}
    kind = last.get("type", "message")
    if kind == "message" and last.get("role") == "user":
        names = {t.get("name") for t in tools if isinstance(t, dict)}
        if "Bash" in names:
            return Reply(DEFAULT_BASH)
        if "exec_command" in names:
            return Reply(DEFAULT_EXEC)
    elif kind == "function_call_output":
        return Reply(Text("done"))
    return Reply(Text(DEFAULT_TEXT))
