"""``GET /models`` on the admin API: every model each upstream can serve, loaded or not (the
one view in upstreams/models/view.py), also in ``/status`` as ``served``; behind the same
token and Host/Origin checks as every admin route."""

from __future__ import annotations

import httpx
import trio

from lmsd.admin.api import create_admin_app
from lmsd.bus import EventBus
from lmsd.config.sections import AccessSettings, DaemonSettings
from lmsd.metrics import Metrics
from lmsd.sessions.store import SessionStore
from tests.emulator.models import ModelSpec
from tests.support.daemon import MODEL, admin_get

HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"


async def test_lists_the_loaded_and_the_downloaded_models(lmsd, emulator):
    answer = await admin_get(lmsd, "/models")
    assert answer.status_code == 200
    data = answer.json()
    rows = {r["name"]: r for r in data["models"]}
    assert set(rows) == {MODEL, "google/gemma-3-12b"}  # the emulator's two
    name = lmsd.router.backends[0].name
    loaded, downloaded = rows[MODEL], rows["google/gemma-3-12b"]
    assert (loaded["upstream"], loaded["loaded"], loaded["state"], loaded["context_length"]
            ) == (name, True, "loaded", 32768)
    assert (downloaded["loaded"], downloaded["state"]) == (False, "not loaded")
    assert data["budgets"] == []
    status = (await admin_get(lmsd, "/status")).json()
    assert status["served"] == data
    assert [m["key"] for m in status["models"]] == [MODEL]  # the watcher's list, as before


async def test_a_hostile_model_name_is_data(start_lmsd, emulator):
    emulator.models[HOSTILE] = ModelSpec(HOSTILE, loaded=False)
    server = await start_lmsd(emulator.url)
    watcher = server.router.backends[0].watcher
    with trio.fail_after(10):  # the downloaded models come with the watcher's first look
        while not watcher.polls:
            await trio.sleep(0.01)
    answer = await admin_get(server, "/models")
    assert answer.headers["content-type"].startswith("application/json")
    assert HOSTILE in [r["name"] for r in answer.json()["models"]]


async def test_behind_the_token_when_one_is_set(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, admin_token="hunter2")
    assert (await admin_get(server, "/models")).status_code == 401
    wrong = await admin_get(server, "/models", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    good = await admin_get(server, "/models", headers={"Authorization": "Bearer hunter2"})
    assert good.status_code == 200 and MODEL in [r["name"] for r in good.json()["models"]]


async def test_a_foreign_origin_cannot_read_it_nor_a_rebound_host(lmsd):
    """A page elsewhere must not read which models this machine has: a GET is a "safe"
    request the guard lets through (protocol/guard.py), so the browser's CORS is what keeps
    the answer from the page, and lmsd grants it no ``Access-Control-Allow-*`` (the browser
    test shows a foreign page's fetch fail); a DNS-rebound Host is refused outright."""
    foreign = await admin_get(lmsd, "/models", headers={"Origin": "https://evil.example"})
    assert not [h for h in foreign.headers if h.lower().startswith("access-control-")]
    rebound = await admin_get(lmsd, "/models", headers={"Host": "evil.example"})
    assert rebound.status_code == 403 and "DNS rebinding" in rebound.text
    assert "qwen" not in rebound.text


async def test_without_a_view_it_answers_no_models():
    """An admin app built without ``models`` (a test's, an older assembly's) answers an
    empty view, not a 404."""
    app = create_admin_app(AccessSettings(), DaemonSettings(), SessionStore(None), EventBus(),
                           Metrics(), status=dict, ready=None)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.get("/models")
    assert (answer.status_code, answer.json()) == (200, {"models": [], "budgets": []})
