"""``models/view.py``: the rows of ``GET /models`` for models lmsd starts itself, built by
the assembly as the daemon builds them; only whether an engine runs is set by hand."""

from __future__ import annotations

from lmsd.config import load_settings
from lmsd.daemon.assembly import started_backends
from lmsd.protocol.servers.lmstudio import LoadedModel
from lmsd.upstreams.models.view import models_json


def started(tmp_path, *names: str):
    path = tmp_path / "lmsd.toml"
    path.write_text("".join(f'[[models]]\nname = "{n}"\ncommand = ["llama-server", "-m", '
                            f'"/m/{n}.gguf", "--port", "${{PORT}}"]\n' for n in names))
    backends, models = started_backends(load_settings({"config": str(path)}, {}))
    assert models is not None
    return backends, models


async def test_a_started_models_context_comes_from_its_engine_listed_under_its_file(tmp_path):
    """llama-server lists its model by file (or ``--alias``) and gives its context in
    ``/props``: the row of the [[models]] name shows it while the engine runs."""
    (big, small), models = started(tmp_path, "big", "small")
    models.is_loaded = lambda model: model == "big"  # type: ignore[method-assign]
    for backend in (big, small):  # each engine's last listing (the watcher's /props read)
        backend.upstream.listed = [LoadedModel(f"/m/{backend.name}.gguf",
                                               f"/m/{backend.name}.gguf", 8192, 8192)]
    rows = {r["name"]: r for r in models_json([big, small])["models"]}
    assert rows["big"]["loaded"] and rows["big"]["context_length"] == 8192
    assert not rows["small"]["loaded"]
    assert rows["small"]["context_length"] is None  # a stopped engine's old look is no answer


async def test_a_started_model_listed_under_its_own_name_keeps_that_context(tmp_path):
    (big,), models = started(tmp_path, "big")
    models.is_loaded = lambda model: True  # type: ignore[method-assign]
    big.upstream.listed = [LoadedModel("big", "big", 4096, 4096)]
    assert models_json([big])["models"][0]["context_length"] == 4096
    big.upstream.listed = []  # nothing listed yet: unknown, not a guess
    assert models_json([big])["models"][0]["context_length"] is None
