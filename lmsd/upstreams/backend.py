"""One upstream as the rest of lmsd sees it: a ``Backend``.

A front asks the backend the router placed it on which dialect to speak, what context a
model is loaded with, which models it serves, and tells it what the engine revealed (a
context limit in an overflow, no support for ``previous_response_id``). It never reaches
for the HTTP client or the watcher. Its health (a circuit breaker fed by requests and the
watcher's polls) and its load (requests in flight) are what the router places by.

What it remembers is per upstream URL: the dialect is decided once per URL (``decide``),
and a limit learned from one engine says nothing about another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ..config.sections import CacheSettings, ClientSettings, ModelSettings, WatchSettings
from ..config.upstreams import UpstreamConfig
from ..log import event
from ..protocol.clients.resends import Resends
from ..protocol.failures import (
    Failure,
    ModelUnavailable,
    Unreachable,
    UpstreamAuth,
    UpstreamBroken,
)
from ..protocol.fit import LearnedLimits
from ..protocol.models import map_model
from ..protocol.servers.engines import UNKNOWN
from ..protocol.urls import display_url
from .breaker import Breaker
from .cache.keeper import CacheKeeper
from .client import Upstream
from .dialect import UNDECIDED, Dialect, ResponsesDialect, decide
from .discovery import discover
from .lms import LmsCli
from .watcher import Watcher


@dataclass(frozen=True)
class Readiness:
    """Can requests be served now (``/readyz``)? ``problem`` is None when they can."""

    url: str
    models: list[str]
    problem: str | None = None


#: How to load a model, by engine (``no_model_message``).
_LOAD_HOW = {
    "LM Studio": "load one (in LM Studio, or `lms load <model>`)",
    "llama-server": "start llama-server with a model (`-m <file.gguf>`, or `--models-dir`)",
    "Ollama": "pull one (`ollama pull <model>`)",
    "vLLM": "start vLLM with a model (`vllm serve <model>`)",
}


class Backend:
    """One upstream (its client, its watcher, its breaker) and what lmsd learned of it."""

    def __init__(self, upstream: Upstream, config: UpstreamConfig, *, client: ClientSettings,
                 models: ModelSettings, watch: WatchSettings, cache: CacheSettings,
                 lms: LmsCli | None = None, source: str = "config") -> None:
        self.client_settings = client  # chaining (the breaker's are read here)
        self.model_settings = models  # client model names' targets (after config's own)
        self.watch_settings = watch  # the watcher's; min_context for a too-small load
        self.config = config
        self.name = self.config.name
        self.upstream = upstream
        self.lms = lms
        #: How the upstream was found (``/status``): the setting, and the source that said.
        self.discovery: dict[str, Any] = {"configured": display_url(self.config.url),
                                          "source": source}
        if self.config.url != "auto" and self.config.kind not in ("lmstudio", "responses"):
            upstream.name = UNKNOWN  # until it answers: it may be any engine
        #: A model lmsd starts (``models/started.py``) whose engine is not running (stopped,
        #: starting, restarting): not polled, not in trouble, routed to (``wait_ready``).
        self.parked: Callable[[], bool] = lambda: False
        self.watcher = Watcher(upstream, watch, lms=lms, rediscover=self.rediscover,
                               name=self.name, on_poll=self._polled,
                               on_reloaded=self._reloaded, parked=lambda: self.parked())
        #: Keeps its conversations' prefixes in the engine's cache (``keep_warm``).
        self.keeper = CacheKeeper(self.name, upstream, cache)
        if self.config.gateway:  # the gateway places requests on its replicas, not lmsd
            self.keeper.enabled = False
        self._was_reachable: bool | None = None
        self._refused_before = False  # the last poll found nothing listening
        self.chaining_refused = False  # the engine keeps no stored responses
        self.learned_limits = LearnedLimits()
        self.resends = Resends()  # what it refused, so a client's resend is answered here
        self._dialect_for: tuple[str, Dialect] | None = None  # (upstream url, its dialect)
        self.breaker = Breaker(client.breaker_failures, client.breaker_cooldown)
        self.in_flight = 0
        self.served = 0  # requests placed here (for /upstreams)
        #: Loads and unloads its models on demand, within a budget (``models/pool.py``).
        self.pool: Any = None

    @property
    def kind(self) -> str:
        """The ``upstream_api`` name for this upstream's configured kind."""
        return "responses" if self.config.kind == "lmstudio" else self.config.kind

    # -- health -------------------------------------------------------------------------------

    def available(self, now: float) -> bool:
        return self.breaker.available(now)

    def succeeded(self) -> None:
        if self.breaker.success():
            event("upstream.rejoined", upstream=self.name, url=self.base_url)

    def failed(self, error: Failure, now: float, *, check: bool = False) -> None:
        """A request or an active check (``check``) says this upstream is unwell. A
        gateway's request counts only when the gateway itself failed (nothing listens, it
        refused the key): any other failure is one replica's, the gateway moves the key
        off it and its other replicas serve on."""
        certain = isinstance(error, Unreachable)  # nothing listens: no need to count
        own = certain or isinstance(error, UpstreamAuth) or check
        if self.config.gateway and not own:
            event("upstream.replica_failed", level=30, upstream=self.name,
                  gateway=self.config.gateway, error=error.message,
                  effect="not counted against the gateway")
            return
        if self.breaker.failure(now, error.message, certain=certain):
            event("upstream.out", level=30, upstream=self.name, url=self.base_url,
                  error=error.message, retry_in_s=self.breaker.wait,
                  effect="its sessions move to the other upstreams")

    def _polled(self) -> None:
        """The watcher's poll is the active health check: one that reached the upstream
        closes the breaker (it is back); a refused connection opens it at once, any other
        failure (a timeout, a reset) counts as one of ``breaker_failures``."""
        if self.watcher.reachable and self._was_reachable is False and self._refused_before:
            # Only after its port refused connections: a process that answers again after
            # that restarted; one that was only slow to answer still holds its cache.
            self.keeper.lost("the upstream answers again (restarted: its cache is empty)")
        self._was_reachable = self.watcher.reachable
        self._refused_before = self.watcher.reachable is False and self.watcher.nothing_listens
        if self.watcher.reachable and not self.watcher.refused:
            self.succeeded()
        elif self.watcher.reachable is False:
            error = self.watcher.last_error or "not reachable"
            self.failed(Unreachable(error) if self.watcher.nothing_listens else
                        UpstreamBroken(error), trio.current_time(), check=True)

    def _reloaded(self, model: str) -> None:
        self.keeper.lost(f"{model} was loaded again (its cache is empty)", model=model)

    def state_json(self) -> dict[str, Any]:
        """Where it is, how it was found, whether it answers, and the dialect spoken
        (``/status``'s ``upstream``, and the start of each ``/upstreams`` entry)."""
        dialect = self.decided_dialect()
        return {**self.discovery, "url": self.base_url,
                "reachable": self.watcher.reachable, "refused": self.watcher.refused,
                "api": dialect.name if dialect else None,
                "api_why": dialect.why if dialect else UNDECIDED,
                "chaining": self.chaining}

    def to_json(self, now: float, active: Any = ()) -> dict[str, Any]:
        """This upstream for ``/upstreams`` and ``/status``."""
        return {
            "name": self.name, "kind": self.config.kind, **self.state_json(),
            "health": self.breaker.to_json(now),
            "in_rotation": self.available(now),
            "in_flight": self.in_flight, "served": self.served,
            "weight": self.config.weight, "max_concurrent": self.config.max_concurrent,
            "active_sessions": len(active),
            "sessions": [{"session": s, "agent": a} for s, a in list(active)[:100]],
            "models": self.config.models or self.loaded_now(),
            "cache": self.keeper.to_json(),
            "config": self.config.to_json(),
        }

    # -- models this upstream serves ------------------------------------------------------

    def target(self, requested: str, override: str | None = None, *,
               loaded: list[str] | None = None, lenient: bool = False) -> str | None:
        """The model id to ask this upstream for, or None when it serves nothing for
        ``requested``: the session's override, a ``model_map`` entry (this upstream's,
        then the global one), a claude-* name's target (``model``, else the first loaded
        model), the name itself. ``lenient`` (Codex, whose model is often a catalog slug):
        a name this upstream does not list goes to its default model instead."""
        if override:
            return override
        mapping = {**self.model_settings.model_map, **self.config.model_map}
        default = self.config.model or self.model_settings.model
        loaded = self.loaded_now() if loaded is None else loaded
        mapped = map_model(requested, mapping=mapping, default=default, loaded=loaded)
        if mapped is None or not lenient or mapped != requested or self.serves(requested):
            return mapped
        return default or (loaded[0] if loaded else None)

    def loaded_now(self) -> list[str]:
        """The loaded models as last seen, without asking (the watcher's, else the client's)."""
        if self.parked():
            return []
        if self.watcher.polls:
            return self.watcher.loaded()
        return [m.instance_id for m in self.upstream.listed]

    def serves(self, model: str) -> bool | None:
        """Does this upstream serve ``model``? Its configured ``models``, else what it
        lists (loaded or not: LM Studio loads on demand); None while it was never seen."""
        if self.config.models:
            return model in self.config.models
        known = self.upstream.known
        if not known and not self.watcher.models:
            return None
        return model in known or model in self.watcher.models or any(
            m.key == model for m in self.watcher.models.values())

    @property
    def base_url(self) -> str:
        return self.upstream.base_url

    @property
    def server_name(self) -> str:
        """How errors name the server ("LM Studio", "the upstream server")."""
        return self.upstream.name

    async def rediscover(self) -> None:
        """Follow LM Studio to its new port (``upstream = "auto"``) once it stops answering."""
        if self.config.url != "auto":
            return
        again = await discover("auto", client=self.upstream.client, lms=self.lms, quiet=True)
        if again.reachable and again.url != self.upstream.base_url:
            self.upstream.set_base_url(again.url)
            self.discovery["source"] = again.source

    def set_api_key(self, api_key: str) -> None:
        """The key sent upstream from now on (SIGHUP)."""
        self.upstream.set_api_key(api_key)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    # -- the dialect and chaining -------------------------------------------------------------

    async def dialect(self) -> Dialect:
        """The dialect for the current upstream, chosen once per upstream URL (by
        ``decide``); until anything answers there, Responses, undecided."""
        url = self.upstream.base_url
        if self._dialect_for is None or self._dialect_for[0] != url:
            decided = await decide(self.upstream.client, self.upstream.target, self.kind)
            if decided is None:
                return ResponsesDialect(self.upstream, UNDECIDED)  # decide once it answers
            kind, why = decided
            self._dialect_for = (url, kind(self.upstream, why))
            if self.upstream.engine in (None, UNKNOWN):  # else named by what it said
                self.upstream.name = kind.server_name
            event("upstream.dialect", upstream=self.name, url=url, dialect=kind.name, why=why)
        return self._dialect_for[1]

    def decided_dialect(self) -> Dialect | None:
        """The dialect chosen for the current upstream, if it has been (for /status)."""
        if self._dialect_for is None:
            return None
        return self._dialect_for[1]

    @property
    def chaining(self) -> bool:
        """Send only what is new: configured on (``chaining``), and not refused."""
        return self.client_settings.chaining and not self.chaining_refused

    def refuse_chaining(self) -> None:
        if not self.chaining_refused:
            self.chaining_refused = True
            event("upstream.chaining_unsupported", level=30, upstream=self.name,
                  url=self.upstream.base_url,
                  effect="full history on every request from now on")

    # -- models and their context -------------------------------------------------------------

    async def models(self) -> tuple[list[str], list[str]]:
        """(loaded model ids, every model id the upstream lists), cached briefly."""
        return await self.upstream.models()

    async def count_tokens(self, text: str, *, model: str | None = None) -> int | None:
        """``text``'s tokens by the engine's own tokenizer, where it has one (the
        dialect knows which endpoint: ``/tokenize``, ``/v1/messages/count_tokens``)."""
        return await (await self.dialect()).count_tokens(text, model=model)

    async def wait_ready(self, model: str) -> None:
        """Wait while ``model`` is being (re)loaded, load it if it is downloaded but not
        loaded (LM Studio), making room for it (``models/pool.py``); raise if that failed or
        it is not there to load."""
        if self.pool is not None:
            await self.pool.ensure(model)
        else:
            await self.watcher.load_for_request(model)

    def loaded_contexts(self) -> dict[str, int]:
        """Each loaded model's context length, by model key and by instance id, as the
        engine lists them (the watcher's last look, else the proxy's last listing)."""
        listed = self.watcher.models.values() if self.watcher.polls else self.upstream.listed
        contexts: dict[str, int] = {}
        for m in listed:
            if m.context_length:
                contexts.setdefault(m.key, m.context_length)
                contexts[m.instance_id] = m.context_length
        return contexts

    def context_limit(self, model: str) -> int | None:
        """The context ``model`` is loaded with, when lmsd can know it: from the engine's
        listing, else from the last overflow the engine reported. None while a reload to
        ``min_context`` is due or under way (the request will wait for it)."""
        if self.watcher.reloading(model):
            return None
        limit = self.loaded_contexts().get(model)
        if limit:
            if self.watch_settings.watch and limit < self.watch_settings.min_context and \
                    self.watcher.can_raise(model):
                return None  # the watcher is about to raise it
            return limit
        return self.learned_limits.get(self.upstream.base_url, model, trio.current_time())

    def learn_limit(self, model: str, limit: int) -> None:
        """Remember the context limit an engine stated in an overflow error."""
        self.learned_limits.learn(self.upstream.base_url, model, limit, trio.current_time())

    def recall_failure(self, key: tuple[str, ...], model: str, body: dict[str, Any],
                       full: dict[str, Any]) -> Failure | None:
        """The failure this engine gave moments ago for the same request (or a prompt at
        least as large, for an overflow); None when it must be asked."""
        return self.resends.recall(key, body, full, limit=self.context_limit(model),
                                   now=trio.current_time())

    def note_failure(self, key: tuple[str, ...], model: str, body: dict[str, Any],
                     full: dict[str, Any], failure: Failure) -> None:
        """Remember what this engine said of a request (``protocol/clients/resends.py``)."""
        self.resends.note(key, body, full, failure, limit=self.context_limit(model),
                          now=trio.current_time())

    def no_model_message(self) -> str:
        """Why nothing can be served yet: for requests (503) and ``/readyz``."""
        engine = self.upstream.name
        how = _LOAD_HOW.get(engine, "load one in the engine")
        return (f"{engine} at {self.upstream.base_url} has no model loaded: {how}, or set "
                f"`model` in lmsd's config")

    def trouble(self, now: float) -> Failure | None:
        """Why this upstream cannot take a request now, as what the client is told (its
        key refused, nothing answering, out of rotation), or None when it can: what the
        watcher and the breaker know, so "no model loaded" is said only when it is so."""
        watcher, engine, url = self.watcher, self.upstream.name, self.base_url
        if self.parked():  # stopped on purpose: a request starts it
            return None
        if watcher.refused:
            return UpstreamAuth(watcher.refused)
        if watcher.reachable is False:
            cause = watcher.last_error or "no answer"
            if watcher.nothing_listens:
                return Unreachable(f"{engine} is not reachable at {url}: nothing listens "
                                   f"there ({cause}); start it, or correct the upstream URL")
            return Unreachable(f"{engine} is not reachable at {url}: {cause}")
        if not self.available(now):
            wait = self.breaker.to_json(now).get("probe_in_s")
            return Unreachable(f"{engine} at {url} is out of rotation after failures "
                               f"({self.breaker.last_error or 'no answer'}); lmsd tries it "
                               f"again in {wait if wait is not None else 0:g} s")
        return None

    def why_not(self, now: float) -> Failure:
        """Why this upstream serves nothing for a request: its trouble, else no model."""
        return self.trouble(now) or ModelUnavailable(self.no_model_message())

    async def loaded_models(self) -> list[str]:
        """Models that can serve a request now, or soon (being reloaded)."""
        if self.watcher.polls or self.parked():
            loaded = self.loaded_now()
            if loaded or self.parked():
                return loaded
        loaded, _ = await self.upstream.models()
        return loaded

    async def readiness(self) -> Readiness:
        """Does the upstream answer, with a model loaded (or one it loads on demand)?"""
        url = self.upstream.base_url
        if self.upstream.hold_background() or self.parked():  # serving lmsd now, or started
            return Readiness(url, self.loaded_now())  # on request: ready, not to be asked
        try:
            answer = await self.upstream.client.get("/v1/models", timeout=2.0)
            if answer.status_code == 200:
                loaded = await self.loaded_models()
                if loaded or self.config.model or self.model_settings.model:  # loads on demand
                    return Readiness(url, loaded)
                problem = self.no_model_message()
            else:
                problem = f"LM Studio answered HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            problem = f"LM Studio is not reachable at {url}: {exc or type(exc).__name__}"
        except Failure as exc:
            problem = exc.message
        return Readiness(url, [], problem)
