"""The LM Studio watcher: follows the loaded models and enforces a minimum context.

Claude Code sends about 20K tokens of system prompt and tools before the user says
anything, so a model loaded at 4096 or 8192 tokens fails on the first turn. Every
``poll_interval`` the watcher reads the loaded models (REST ``/api/v1/models``, else
``/api/v0/models``, else ``lms ps --json``) and reloads any model below ``min_context``
(``min_context.py``: how, the back-off, and the requests that wait for a reload).

An upstream that refuses lmsd (LM Studio's "Require Authentication" without the right
key) is reported, not crashed on: the watcher polls less often until it is let in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from ..config.sections import WatchSettings
from ..log import event
from ..protocol.failures import Failure, UpstreamAuth, UpstreamBroken
from ..protocol.servers.auth import REFUSED_STATUSES, key_refused_answer
from ..protocol.servers.engines import LM_STUDIO, engine_of, slot_context
from ..protocol.servers.lmstudio import (
    OPENAI,
    V0,
    V1,
    LoadedModel,
    models_from_lms_ps,
    parse_models,
)
from .client import Upstream
from .min_context import Busy, ContextEnforcer, Lms

REFUSED_POLL_MAX = 60.0  # while the upstream refuses the key, poll at most this rarely
POLL_TIMEOUT = 5.0  # seconds a listing may take (a busy engine may not answer it: see _poll)


class Watcher(ContextEnforcer):
    """Follows one upstream's loaded models (and its health) every ``poll_interval``."""

    def __init__(self, upstream: Upstream, settings: WatchSettings, *, lms: Lms | None = None,
                 rediscover: Callable[[], Awaitable[None]] | None = None,
                 name: str = "", on_poll: Callable[[], None] | None = None,
                 on_reloaded: Callable[[str], None] | None = None,
                 parked: Callable[[], bool] | None = None) -> None:
        self.upstream = upstream
        #: True while the engine is stopped on purpose (a model lmsd starts on demand, not
        #: running now): not polled then, and a poll it ended tells nothing.
        self.parked = parked or (lambda: False)
        self.name = name  # the upstream's name, in every event (several upstreams)
        self.on_poll = on_poll  # told after each poll (the backend's active health check)
        self.on_reloaded = on_reloaded  # told after it reloaded a model (its cache is gone)
        self.settings = settings
        self.lms = lms
        self.rediscover = rediscover
        self.models: dict[str, LoadedModel] = {}
        self.reachable: bool | None = None
        self.source: str | None = None
        self.last_poll: float | None = None
        self.polls = 0
        self.last_error: str | None = None
        self.nothing_listens = False  # the last poll's connection was refused (no doubt)
        self.refused: str | None = None  # why the upstream refuses lmsd, with the fix
        self._refused_polls = 0
        self._reloading: dict[str, trio.Event] = {}
        self._failed: dict[str, Failure] = {}
        self.max_contexts: dict[str, int] = {}  # LM Studio's listing: each model's largest
        self.sizes: dict[str, int] = {}  # LM Studio's listing: each model's size_bytes
        self._raised: dict[str, int] = {}
        self._backoff: dict[str, tuple[float, float]] = {}
        self._capped_warned: set[str] = set()
        self._loaded_by_us: set[str] = set()  # keys we (re)loaded since the last poll
        self.busy_polls = 0  # polls left out or unanswered while the engine served lmsd
        self._props_for: tuple[str, str] | None = None  # (url, model) /props was read for
        self._slot_ctx: int | None = None  # what it said a slot holds

    # -- the supervised task ------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            if not self.parked():
                await self.poll_once()
            await trio.sleep(self.next_poll_in())

    def next_poll_in(self) -> float:
        """``poll_interval``; doubled per poll the upstream refused, up to a minute."""
        interval = self.settings.poll_interval
        if not self._refused_polls:
            return interval
        return max(interval, min(interval * 2 ** self._refused_polls, REFUSED_POLL_MAX))

    async def poll_once(self) -> None:
        told = False
        try:
            told = await self._poll()
        finally:
            if told and self.on_poll is not None:
                self.on_poll()

    async def _poll(self) -> bool:
        """One look at the upstream; False when it told nothing of its health: the poll
        was left out (it would disturb the answer a one-at-a-time engine serves) or went
        unanswered while the engine served lmsd's request (busy, not down)."""
        try:
            models, source = await self._fetch()
        except Busy:
            self.busy_polls += 1
            return False
        except (httpx.TransportError, Failure) as exc:
            if self.parked():  # stopped on purpose while the poll ran: not down
                return False
            if isinstance(exc, httpx.TimeoutException) and self.upstream.busy:
                # It queued the listing behind the answer it streams for lmsd: busy, and
                # from now on a one-at-a-time engine (polled only while lmsd is idle there).
                self.busy_polls += 1
                self.upstream.serves_one_at_a_time(
                    "its model listing went unanswered while it served lmsd's request")
                return False
            if isinstance(exc, UpstreamAuth):
                self._set_refused(exc.message)
                return True
            self.nothing_listens = isinstance(exc, httpx.ConnectError)
            self._props_for = None  # it may come back started otherwise
            self._set_reachable(False, str(exc) or type(exc).__name__)
            if self.rediscover is not None:
                await self.rediscover()
            return True
        self._set_reachable(True)
        self.refused, self._refused_polls = None, 0
        self._diff(models)
        self.models, self.source = models, source
        self.last_poll = trio.current_time()
        self.polls += 1
        if self.settings.watch and source != OPENAI:  # only LM Studio reloads on request
            for model in list(models.values()):
                await self._enforce(model)
        return True

    # -- reading the models ---------------------------------------------------------------

    async def _get(self, path: str) -> Any:
        if self.upstream.hold_background():
            raise Busy  # checked before each request: one may have started meanwhile
        # A pooled connection the server closed as we reused it: the client's transport
        # sends the poll again (``upstreams/keepalive.py``), so one such poll is no outage.
        response = await self.upstream.client.get(path, timeout=POLL_TIMEOUT)
        if response.status_code == 404:
            return None
        if response.status_code in REFUSED_STATUSES:
            self.upstream.identified(engine_of(said=response.text))  # LM Studio names itself
            raise key_refused_answer(response.status_code, response.content,
                                     key=self.upstream.api_key, name=self.upstream.name)
        if response.status_code != 200:
            raise UpstreamBroken(f"GET {path} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise UpstreamBroken(f"GET {path} answered with no JSON") from None

    async def _fetch(self) -> tuple[dict[str, LoadedModel], str]:
        for path in (V1, V0):
            listing = parse_models(path, await self._get(path))
            if listing is not None:
                self.upstream.known, self.max_contexts = listing.known, listing.max_contexts
                self.sizes = listing.sizes
                self.upstream.identified(LM_STUDIO)  # its own listing
                return {m.instance_id: m for m in listing.loaded}, path
        if self.lms is not None and self.lms.available and await self._is_lmstudio():
            # Only now: the server answered, so `lms` cannot launch LM Studio as a side effect.
            listing = models_from_lms_ps(await self.lms.ps())
            return {m.instance_id: m for m in listing.loaded}, "lms ps"
        data = await self._get(OPENAI)  # any OpenAI-compatible server
        self.upstream.saw_listing(data)  # names the engine, and learns one-at-a-time
        listing = parse_models(OPENAI, data)
        if listing is not None:
            await self._slot_context(listing.loaded)
            self.upstream.known = listing.known
            return {m.instance_id: m for m in listing.loaded}, OPENAI
        raise UpstreamBroken("the upstream lists no models")

    async def _slot_context(self, loaded: list[LoadedModel]) -> None:
        """A server that lists no context: llama-server's ``/props`` says what its one
        model's slot holds, which is all it can hold (lmsd cannot reload it larger). Read
        again only when the listing changes or the server was away (restarted)."""
        if len(loaded) != 1 or loaded[0].context_length:
            return
        key = (self.upstream.base_url, loaded[0].instance_id)
        if self._props_for != key:
            try:
                props = await self._get("/props")
            except (httpx.HTTPError, Failure):
                props = None
            self._props_for, self._slot_ctx = key, slot_context(props)
            if self._slot_ctx:
                self.upstream.identified(engine_of(props=props))
        if self._slot_ctx:
            loaded[0].context_length = loaded[0].max_context_length = self._slot_ctx

    def can_raise(self, model: str) -> bool:
        """Can the watcher reload ``model`` with a larger context? Only LM Studio's, and
        not past its ``max_context_length``."""
        if self.source == OPENAI:
            return False
        m = next((m for m in self.models.values() if model in (m.key, m.instance_id)), None)
        return m is None or m.max_context_length is None or (
            m.context_length is not None and m.max_context_length > m.context_length)

    async def _is_lmstudio(self) -> bool:
        from .discovery import probe

        return await probe(self.upstream.client, self.upstream.target)

    def _set_reachable(self, up: bool, error: str | None = None) -> None:
        if up != self.reachable:
            if up:
                event("upstream.up", upstream=self.name, url=self.upstream.base_url)
            else:
                event("upstream.down", level=30, upstream=self.name,
                      url=self.upstream.base_url, error=error)
        self.reachable = up
        self.last_error = error

    def _set_refused(self, message: str) -> None:
        """The upstream answers but refuses lmsd's key: say so once, poll less often."""
        if message != self.refused:
            event("upstream.refused", level=40, upstream=self.name, url=self.upstream.base_url,
                  error=message)
        if not self.reachable:
            self._set_reachable(True)
        self.refused, self.last_error = message, message
        self._refused_polls += 1

    def _diff(self, models: dict[str, LoadedModel]) -> None:
        ours, self._loaded_by_us = self._loaded_by_us, set()
        for iid, m in models.items():
            old = self.models.get(iid)
            if old is None:
                event("model.loaded", model=m.key, instance=iid, context_length=m.context_length,
                      max_context_length=m.max_context_length)
                if m.key not in ours:
                    self._fresh_start(m)
            elif old.context_length != m.context_length:
                event("model.context_changed", model=m.key, instance=iid,
                      old=old.context_length, new=m.context_length)
        for iid, m in self.models.items():
            if iid not in models and m.key not in self._reloading:
                event("model.unloaded", model=m.key, instance=iid)

    # -- for the proxy and the admin API ---------------------------------------------------

    def loaded(self) -> list[str]:
        return [m.instance_id for m in self.models.values()]

    def to_json(self) -> dict[str, Any]:
        return {
            "enforcing": self.settings.watch,
            "min_context": self.settings.min_context,
            "poll_interval": self.settings.poll_interval,
            "polls": self.polls,
            "source": self.source,
            "reachable": self.reachable,
            "busy_polls": self.busy_polls,
            "one_at_a_time": self.upstream.one_at_a_time,
            "last_error": self.last_error,
            "refused": self.refused,
            "reloading": sorted({k for k in self._reloading}),
            "backing_off": sorted(self._backoff),
        }
