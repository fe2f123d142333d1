"""The upstream side of lmsd as the fronts see it: the ``Router``.

A front asks the router which dialect to speak, what context a model is loaded with, which
models can serve, and tells it what an engine revealed (a context limit in an overflow, no
support for ``previous_response_id``). It never reaches for the HTTP client or the watcher.
Today the router holds one upstream; issue 14 makes it choose among several (by model, with
affinity and failover), a change that then stays inside this module.

What it remembers is per upstream URL: the dialect is decided once per URL (``decide``),
and a limit learned from one engine says nothing about another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ..config import Settings
from ..log import event
from ..protocol.failures import Failure
from ..protocol.fit import LearnedLimits
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


class Router:
    """The upstream (its client, its watcher) and what lmsd has learned about it."""

    def __init__(self, settings: Settings, upstream: Upstream, *,
                 lms: LmsCli | None = None, source: str = "config") -> None:
        self.settings = settings
        self.upstream = upstream
        self.lms = lms
        #: How the upstream was found (``/status``): the setting, and the source that said.
        self.discovery: dict[str, Any] = {"configured": settings.upstream, "source": source}
        self.watcher = Watcher(upstream, settings, lms=lms, rediscover=self.rediscover)
        self.chaining_refused = False  # the engine keeps no stored responses
        self.learned_limits = LearnedLimits()
        self._dialect_for: tuple[str, Dialect] | None = None  # (upstream url, its dialect)

    @property
    def base_url(self) -> str:
        return self.upstream.base_url

    @property
    def server_name(self) -> str:
        """How errors name the server ("LM Studio", "the upstream server")."""
        return self.upstream.name

    async def rediscover(self) -> None:
        """Follow LM Studio to its new port (``upstream = "auto"``) once it stops answering."""
        if self.settings.upstream != "auto":
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
            decided = await decide(self.upstream.client, url, self.settings.upstream_api)
            if decided is None:
                return ResponsesDialect(self.upstream, UNDECIDED)  # decide once it answers
            kind, why = decided
            self._dialect_for = (url, kind(self.upstream, why))
            self.upstream.name = kind.server_name
            event("upstream.dialect", url=url, dialect=kind.name, why=why)
        return self._dialect_for[1]

    def decided_dialect(self) -> Dialect | None:
        """The dialect chosen for the current upstream, if it has been (for /status)."""
        if self._dialect_for is None:
            return None
        return self._dialect_for[1]

    @property
    def chaining(self) -> bool:
        """Send only what is new: configured on (``chaining``), and not refused."""
        return self.settings.chaining and not self.chaining_refused

    def refuse_chaining(self) -> None:
        if not self.chaining_refused:
            self.chaining_refused = True
            event("upstream.chaining_unsupported", level=30, url=self.upstream.base_url,
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
        """Wait while ``model`` is being reloaded; raise if the reload failed."""
        await self.watcher.wait_ready(model)

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
            if self.settings.watch and limit < self.settings.min_context:
                return None  # the watcher is about to raise it
            return limit
        return self.learned_limits.get(self.upstream.base_url, model, trio.current_time())

    def learn_limit(self, model: str, limit: int) -> None:
        """Remember the context limit an engine stated in an overflow error."""
        self.learned_limits.learn(self.upstream.base_url, model, limit, trio.current_time())

    def no_model_message(self) -> str:
        """Why nothing can be served yet: for requests (503) and ``/readyz``."""
        return (f"{self.upstream.name} at {self.upstream.base_url} has no model loaded: load "
                f"one (in LM Studio, or `lms load <model>`), or set `model` in lmsd's config")

    async def loaded_models(self) -> list[str]:
        """Models that can serve a request now, or soon (being reloaded)."""
        if self.watcher.polls:
            loaded = self.watcher.loaded()
            if loaded:
                return loaded
        loaded, _ = await self.upstream.models()
        return loaded

    async def readiness(self) -> Readiness:
        """Does the upstream answer, with a model loaded (or one configured, which LM
        Studio loads on demand)?"""
        url = self.upstream.base_url
        try:
            answer = await self.upstream.client.get("/v1/models", timeout=2.0)
            if answer.status_code == 200:
                loaded = await self.loaded_models()
                if loaded or self.settings.model:  # a configured model loads on demand (JIT)
                    return Readiness(url, loaded)
                problem = self.no_model_message()
            else:
                problem = f"LM Studio answered HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            problem = f"LM Studio is not reachable at {url}: {exc or type(exc).__name__}"
        except Failure as exc:
            problem = exc.message
        return Readiness(url, [], problem)
