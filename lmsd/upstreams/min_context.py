"""Keeping a model's context at ``min_context`` (the watcher's second job), and loading a
model a request names at that context (``load_for_request``: one load, where LM Studio's
own JIT load and the reload after it were two).

A model loaded below the minimum is reloaded with ``max(min_context, current)`` tokens
(LM Studio's REST API, else the ``lms`` CLI), never above its ``max_context_length`` and
never shrinking it. A user who puts a model back below the minimum by hand is not fought:
the watcher backs off, doubling each time. A failed reload puts the model back as it was;
requests for a model being reloaded or loaded wait for it (``wait_ready``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import httpx
import trio

from ..config.sections import WatchSettings
from ..log import event
from ..protocol.failures import Failure, ModelUnavailable, NotFound
from ..protocol.servers.lmstudio import V1, LoadedModel
from .client import Upstream

BACKOFF_FIRST = 60.0
BACKOFF_MAX = 3600.0
LOAD_TIMEOUT = 600.0  # loading a large model can take minutes


class Lms(Protocol):
    available: bool

    async def ps(self) -> list[dict[str, Any]]: ...
    async def load(self, model_key: str, *, context_length: int,
                   identifier: str | None = None, timeout: float | None = None) -> None: ...
    async def unload(self, identifier: str) -> None: ...


class Busy(Exception):
    """The engine serves lmsd's request and would be disturbed by the poll."""


class _NoRestApi(Exception):
    """This LM Studio has no REST load/unload (before 0.4)."""


class ContextEnforcer:
    """The reloads of a ``Watcher`` (which holds this state and reads the models)."""

    upstream: Upstream
    settings: WatchSettings
    lms: Lms | None
    on_reloaded: Callable[[str], None] | None
    _reloading: dict[str, trio.Event]
    _failed: dict[str, Failure]  # what requests that waited for a (re)load are told
    _raised: dict[str, int]
    _backoff: dict[str, tuple[float, float]]
    _capped_warned: set[str]
    _loaded_by_us: set[str]
    models: dict[str, LoadedModel]
    source: str | None
    max_contexts: dict[str, int]

    async def _fetch(self) -> tuple[dict[str, LoadedModel], str]:
        raise NotImplementedError  # the watcher's listing

    # -- enforcing the minimum context --------------------------------------------------------

    async def _enforce(self, m: LoadedModel) -> None:
        minimum = self.settings.min_context
        current = m.context_length
        if current is None or current >= minimum:
            return
        now = trio.current_time()
        not_before, delay = self._backoff.get(m.key, (0.0, BACKOFF_FIRST / 2))
        if now < not_before:
            return
        if m.key in self._raised:  # we raised it and someone put it back: back off
            del self._raised[m.key]
            self._back_off(m.key, delay)
            event("model.context_reverted", level=30, model=m.key, context_length=current,
                  action=f"not reloading again for {min(delay * 2, BACKOFF_MAX):.0f} s")
            return
        target = max(minimum, current)
        cap = m.max_context_length
        if cap is not None and target > cap:
            if m.key not in self._capped_warned:
                self._capped_warned.add(m.key)
                event("model.context_capped", level=30, model=m.key, minimum=minimum,
                      max_context_length=cap,
                      note="the model cannot hold Claude Code's minimum context")
            if cap <= current:
                return
            target = cap
        await self._reload(m, target)

    def _fresh_start(self, m: LoadedModel) -> None:
        """Someone loaded the model anew: whatever we backed off from is over."""
        self._raised.pop(m.key, None)
        self._failed.pop(m.key, None)
        if self._backoff.pop(m.key, None) is not None:
            event("model.backoff_cleared", model=m.key, instance=m.instance_id,
                  reason="a new instance of the model was loaded")

    def _back_off(self, key: str, delay: float) -> None:
        delay = min(delay * 2, BACKOFF_MAX)
        self._backoff[key] = (trio.current_time() + delay, delay)

    async def _reload(self, m: LoadedModel, target: int) -> None:
        done = trio.Event()
        self._reloading[m.key] = self._reloading[m.instance_id] = done
        self._failed.pop(m.key, None)
        m.state = "reloading"
        event("model.reloading", model=m.key, instance=m.instance_id,
              old=m.context_length, new=target)
        try:
            try:
                via = await self._reload_rest(m, target)
            except _NoRestApi:
                via = await self._reload_lms(m, target)
            event("model.context_enforced", model=m.key, instance=m.instance_id,
                  old=m.context_length, new=target, via=via)
            self._raised[m.key] = target
            self._backoff.pop(m.key, None)
            self._loaded_by_us.add(m.key)
            m.context_length, m.state = target, "loaded"
            if self.on_reloaded is not None:
                self.on_reloaded(m.key)
        except Exception as exc:  # any failure: report, back off, try to restore
            reason = str(exc) or type(exc).__name__
            self._failed[m.key] = ModelUnavailable(
                f"LM Studio could not reload {m.key} with a larger context: {reason}")
            _, delay = self._backoff.get(m.key, (0.0, BACKOFF_FIRST / 2))
            self._back_off(m.key, delay)
            event("model.reload_failed", level=40, model=m.key, instance=m.instance_id,
                  target=target, error=reason)
            await self._restore(m)
        finally:
            self._reloading.pop(m.key, None)
            self._reloading.pop(m.instance_id, None)
            done.set()

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.upstream.client.post(path, json=body,
                                               timeout=httpx.Timeout(10.0, read=600.0))

    async def _reload_rest(self, m: LoadedModel, target: int) -> str:
        unload = await self._post("/api/v1/models/unload", {"instance_id": m.instance_id})
        if unload.status_code in (404, 405) and b"instance" not in unload.content:
            raise _NoRestApi
        await self._load_rest(m.key, target)
        return "rest"

    async def _load_rest(self, key: str, context_length: int | None) -> int | None:
        """``POST /api/v1/models/load``; the context LM Studio says it loaded with."""
        body: dict[str, Any] = {"model": key}
        if context_length is not None:
            body["context_length"] = context_length
        load = await self._post("/api/v1/models/load", body)
        if load.status_code != 200:
            raise RuntimeError(f"LM Studio refused the load (HTTP {load.status_code}): "
                               f"{load.text[:300]}")
        try:
            loaded = (load.json().get("load_config") or {}).get("context_length")
        except (ValueError, AttributeError):
            loaded = None
        return loaded if isinstance(loaded, int) else context_length

    async def _reload_lms(self, m: LoadedModel, target: int) -> str:
        if self.lms is None or not self.lms.available:
            raise RuntimeError("no REST load API and no `lms` CLI to reload with")
        await self.lms.unload(m.instance_id)
        await self.lms.load(m.key, context_length=target, identifier=m.instance_id,
                            timeout=LOAD_TIMEOUT)
        return "lms"

    async def _restore(self, m: LoadedModel) -> None:
        """After a failed reload, put the model back as it was, if it was unloaded."""
        with trio.move_on_after(LOAD_TIMEOUT):
            try:
                models, _ = await self._fetch()
                if any(x.key == m.key for x in models.values()):
                    m.state = "loaded"
                    return
                response = await self._post("/api/v1/models/load", {
                    "model": m.key, "context_length": m.context_length})
                if response.status_code == 200:
                    m.state = "loaded"
                    self._loaded_by_us.add(m.key)
                    event("model.restored", model=m.key, context_length=m.context_length)
            except (httpx.HTTPError, Failure, ValueError, Busy) as exc:
                event("model.restore_failed", level=40, model=m.key, error=str(exc))

    # -- loading the model a request names ----------------------------------------------------

    def is_loaded(self, model: str) -> bool:
        return any(model in (m.key, m.instance_id) for m in self.models.values())

    async def load_for_request(self, model: str) -> None:
        """Before a request for ``model`` is sent: wait for its load or reload under way;
        load it once at ``min_context`` when LM Studio has it downloaded but not loaded
        (requests that arrive meanwhile wait for the same load); refuse a model it has not
        downloaded (404, naming what it can serve). Only where LM Studio's REST listing
        answered: it names every downloaded model, and its load API takes the context."""
        if model in self._reloading:
            return await self.wait_ready(model)
        if self.source != V1 or self.is_loaded(model):
            return None
        done = self._reloading[model] = trio.Event()  # claimed before any await: one load
        self._failed.pop(model, None)
        try:
            await self._load_fresh(model)
        finally:
            self._reloading.pop(model, None)
            done.set()
        if model in self._failed:
            raise self._failed[model]
        return None

    async def _load_fresh(self, model: str) -> None:
        """Look again (the last poll may be old: it may have been loaded or downloaded
        since), then load it, or say why not."""
        try:
            models, source = await self._fetch()
        except (httpx.HTTPError, Failure, ValueError, Busy):
            models, source = {}, V1  # the last look will do; the load says the rest
        if source == V1 and any(model in (m.key, m.instance_id) for m in models.values()):
            self.models.update({iid: m for iid, m in models.items() if m.key == model})
            return
        known = self.upstream.known
        if model not in known:
            self._failed[model] = NotFound(
                f"model {model!r} not found: LM Studio at {self.upstream.base_url} has not "
                f"downloaded it; it can serve {', '.join(known) or 'nothing (download one)'}")
            return
        target: int | None = None
        if self.settings.watch:  # the context lmsd would raise it to after a default load
            target = self.settings.min_context
            cap = self.max_contexts.get(model)
            if cap is not None and target > cap:
                target = cap
        event("model.loading", model=model, why="request", context_length=target)
        started = trio.current_time()
        try:
            with trio.fail_after(LOAD_TIMEOUT):
                loaded = await self._load_rest(model, target)
        except Exception as exc:  # any failure: the waiting requests are told why
            reason = str(exc) or type(exc).__name__
            self._failed[model] = ModelUnavailable(f"LM Studio could not load {model}: {reason}")
            event("model.load_failed", level=40, model=model, why="request", error=reason)
            return
        seconds = round(trio.current_time() - started, 3)
        self.models[model] = LoadedModel(model, model, loaded, self.max_contexts.get(model))
        self._loaded_by_us.add(model)
        event("model.load", model=model, why="request", context_length=loaded,
              seconds=seconds)
        if self.on_reloaded is not None:
            self.on_reloaded(model)

    def reloading(self, model: str) -> bool:
        return model in self._reloading

    async def wait_ready(self, model: str) -> None:
        """Wait while ``model`` is being reloaded; raise if the reload failed."""
        done = self._reloading.get(model)
        if done is None:
            return
        event("request.waiting_for_reload", model=model)
        await done.wait()
        key = next((m.key for m in self.models.values() if model in (m.key, m.instance_id)),
                   model)
        if key in self._failed:
            raise self._failed[key]

    async def unload_instance(self, instance_id: str) -> None:
        """Unload one loaded instance (the model pool's swap or idle ttl): LM Studio's REST
        API, else ``lms unload``; raise naming why not."""
        if self.source == V1:
            answer = await self._post("/api/v1/models/unload", {"instance_id": instance_id})
            if answer.status_code != 200:
                raise RuntimeError(f"LM Studio refused the unload (HTTP "
                                   f"{answer.status_code}): {answer.text[:300]}")
        elif self.lms is not None and self.lms.available:
            await self.lms.unload(instance_id)
        else:
            raise RuntimeError("no REST unload API and no `lms` CLI to unload with")
        self.models.pop(instance_id, None)
