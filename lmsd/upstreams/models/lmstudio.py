"""LM Studio as a ``Loader``: its downloaded models, loaded through the watcher (one load, at
``min_context``: ``min_context.py``), unloaded through its REST API (``lms`` before 0.4)."""

from __future__ import annotations

from ...protocol.failures import NotFound
from ...protocol.servers.lmstudio import V1
from ..watcher import Watcher
from .pool import Listed


class LmStudioModels:
    """The models of one LM Studio upstream, as its watcher last saw them."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def listing(self) -> dict[str, Listed]:
        watcher = self.watcher
        out = {name: Listed(name, False, watcher.sizes.get(name, 0))
               for name in watcher.upstream.known}
        loaded = watcher.models.values() if watcher.polls else watcher.upstream.listed
        for m in loaded:  # before the first poll: what the startup's listing said
            out[m.key] = Listed(m.key, True, watcher.sizes.get(m.key, 0), m.context_length)
        return out

    def is_loaded(self, model: str) -> bool:
        """Loaded and not being reloaded (a request waits for a reload: ``load``). Where
        LM Studio's REST listing did not answer (another engine, LM Studio before 0.4),
        lmsd loads nothing: every model counts as loaded but one being reloaded."""
        if self.watcher.reloading(model):
            return False
        return self.watcher.source != V1 or self.watcher.is_loaded(model)

    async def load(self, model: str) -> None:
        await self.watcher.load_for_request(model)

    async def unload(self, model: str) -> None:
        instances = [iid for iid, m in self.watcher.models.items() if m.key == model]
        if not instances:
            raise NotFound(f"{model} is not loaded")
        for iid in instances:
            await self.watcher.unload_instance(iid)
