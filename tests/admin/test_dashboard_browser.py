"""The dashboard in a real headless Chromium (tests/support/browser.py): it loads, shows a
session within seconds of a real request, follows it live, resets it, filters the event
tail, opens with a token, and reads narrow and dark. Each test keeps a screenshot."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.emulator import Reply, Text
from tests.emulator.models import ModelSpec
from tests.support.conversation import Conversation, tool_turns
from tests.support.daemon import MODEL, admin_get

pytestmark = pytest.mark.browser

CARD = 'article.session[data-session="{}"]'


async def test_a_real_session_shows_updates_live_and_resets(lmsd, emulator, client, page):
    emulator.script(*tool_turns(2))
    await page.open(lmsd.admin_url + "/")
    await page.shows("#conn", "live")
    await page.shows("#no-sessions", "No sessions yet")
    assert "healthy" in await page.shows("#upstreams", emulator.url)
    await page.shows("#model-events", "model.loaded")  # the watcher's, replayed on connect

    chat = Conversation(client, session="dash-1")
    await chat.send("start")
    card = CARD.format("dash-1")
    text = await page.shows(card, "Turns\n1")
    assert "Chain hits\n0" in text and "no_node \u00d71" in text and "anthropic" in text
    assert "TTFT per turn:" in text and "no data" not in text.split("TTFT per turn:")[1][:12]
    await page.shows("#events", "request.end")

    await chat.send()  # the page follows without a reload
    text = await page.shows(card, "Turns\n2")
    assert "Chain hits\n1" in text
    points = await page.js("return document.querySelector(arguments[0] + ' polyline.ttft')"
                           ".getAttribute('points').split(' ').length;", card)
    assert points == 2
    assert lmsd.store.node_count() == 2
    await page.screenshot("-live")

    await page.click(card + " button.reset")
    await page.gone(card)
    assert lmsd.store.node_count() == 0
    await page.shows("#events", "session.reset")
    assert await page.js("return document.querySelector('button.record') === null;")
    await page.finish()


async def test_the_event_tail_filters_like_lmsd_tail(lmsd, emulator, client, page):
    emulator.script(Reply(Text("a")), Reply(Text("b")))
    await page.open(lmsd.admin_url + "/")
    await page.shows("#conn", "live")
    await Conversation(client, session="tail-a").send("one")
    await Conversation(client, session="tail-b").send("two")
    await page.shows("#events", "session=tail-b")
    await page.js("document.getElementById('f-session').value = 'tail-a';"
                  "document.getElementById('f-types').value = 'request';"
                  "document.querySelector('#filters button[type=submit]').click();")
    lines = await page.js("return [...document.querySelectorAll('#events li')]"
                          ".map(li => li.innerText);")
    assert lines and all("session=tail-a" in line for line in lines), lines
    kinds = await page.js("return [...document.querySelectorAll('#events li')]"
                          ".map(li => li.dataset.type);")
    assert set(kinds) == {"request.start", "request.end"}, kinds
    await page.shows(CARD.format("tail-b"), "Turns\n1")  # the filter is the tail's only
    await page.finish()


async def test_opens_with_the_token_and_hides_it(start_lmsd, emulator, page):
    server = await start_lmsd(emulator.url, admin_token="hunter2")
    await page.open(server.admin_url + "/?token=hunter2")
    await page.shows("#conn", "live")
    await page.shows("#upstreams", emulator.url)
    assert "hunter2" not in await page.js("return location.href;")
    await page.finish()


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_narrow_reads_in_one_column_light_and_dark(lmsd, emulator, client, page,
                                                          scheme):
    emulator.script(Reply(Text("hi")))
    await page.run(page.driver.set_window_size, 400, 900)
    await page.run(page.driver.execute_cdp_cmd, "Emulation.setEmulatedMedia",
                   {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
    await page.open(lmsd.admin_url + "/")
    await Conversation(client, session="narrow").send("hello")
    await page.shows(CARD.format("narrow"), "Turns\n1")
    columns = await page.js("return getComputedStyle(document.querySelector('main'))"
                            ".gridTemplateColumns.split(' ').length;")
    assert columns == 1
    background = await page.js("return getComputedStyle(document.body).backgroundColor;")
    assert background == ("rgb(21, 23, 27)" if scheme == "dark" else "rgb(247, 247, 248)")
    overflow = await page.js("return document.documentElement.scrollWidth"
                             " - document.documentElement.clientWidth;")
    assert overflow <= 0, "nothing wider than a phone"
    await page.finish()


async def test_record_buttons_start_and_stop_recording(start_lmsd, emulator, page):
    """``/status`` says which sessions record; the page labels each session's button by
    it, and a click starts (``PUT``) or stops (``DELETE /sessions/{id}/record``) it."""
    server = await start_lmsd(emulator.url)
    emulator.script(Reply(Text("a")), Reply(Text("b")))
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="sk-ant-test",
                                        max_retries=0) as client:
        await Conversation(client, session="rec-on").send("one")
        await Conversation(client, session="rec-off").send("two")
    async with httpx.AsyncClient(base_url=server.admin_url) as http:
        assert (await http.put("/sessions/rec-on/record")).status_code == 200
    await page.open(server.admin_url + "/")
    assert "Stop recording" in await page.shows(CARD.format("rec-on") + " button.record")
    assert await page.shows(CARD.format("rec-off") + " button.record") == "Record"
    await page.click(CARD.format("rec-off") + " button.record")
    await page.shows(CARD.format("rec-off") + " button.record", "Stop recording")
    await page.click(CARD.format("rec-on") + " button.record")
    await page.shows(CARD.format("rec-on") + " button.record", "Record")
    status = (await admin_get(server, "/status")).json()
    assert status["recording"]["sessions"] == ["rec-off"]
    await page.finish()


async def test_a_stateless_upstreams_session_shows_its_cache_not_misses(start_lmsd, emulator,
                                                                        page):
    """A chat upstream's session card says its turns are unchained by design and how much
    of the prompt the engine's cache held, with no miss count; with the one upstream, that
    upstream's card counts the session as active there, as the session card names it."""
    emulator.llama_server, emulator.usage_mode = True, "openai"
    server = await start_lmsd(emulator.url, upstream_api="chat")
    emulator.script(*tool_turns(3))
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="sk-ant-test",
                                        max_retries=0) as client:
        chat = Conversation(client, session="stateless-1")
        await chat.send("start")
        for _ in range(2):
            await chat.send()
    [stats] = server.store.stats.values()
    await page.open(server.admin_url + "/")
    text = await page.shows(CARD.format("stateless-1"), "Turns\n3")
    assert "Chaining\nnone: a stateless upstream, each turn sent whole" in text
    assert f"Cached\n{stats.cached_percent}% of the prompt tokens" in text
    assert stats.cached_percent > 0
    assert "Misses" not in text and "stateless_upstream" not in text
    name = server.router.backends[0].name
    assert f"Upstream\n{name}" in text
    upstream = await page.shows("#upstreams", "Active sessions")
    assert "Active sessions\n1 in the last 15 min: stateless-1" in upstream, upstream
    await page.screenshot("-stateless")
    await page.finish()


NONE = "\u2013"  # the page's en dash for unknown
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"

ROWS = """return [...document.querySelectorAll('#served tbody tr')].map(tr =>
  [tr.dataset.model, ...[...tr.cells].map(td => td.innerText)]);"""


async def test_the_models_panel_shows_loaded_and_downloaded_models_as_text(
        start_lmsd, emulator, page):
    """The Models panel lists what the emulated LM Studio can serve, loaded or not, as
    ``GET /models`` does; a model named like markup (names come from engines) is text."""
    emulator.models[HOSTILE] = ModelSpec(HOSTILE, loaded=False)
    server = await start_lmsd(emulator.url)
    name = server.router.backends[0].name
    await page.open(server.admin_url + "/")
    await page.shows("#served", "google/gemma-3-12b")
    rows = {r[0]: r[1:] for r in await page.js(ROWS)}
    size = "15.8 GiB"  # LM Studio's size_bytes for each (the emulator's 17,000,000,000)
    assert rows[MODEL] == [MODEL, name, "loaded", size, "32,768", "never used", "0", NONE]
    assert rows["google/gemma-3-12b"] == ["google/gemma-3-12b", name, "not loaded", size,
                                          NONE, "never used", "0", NONE]
    assert rows[HOSTILE][0] == HOSTILE  # shown as the characters it is
    assert await page.js("return document.querySelectorAll('#served img').length;") == 0
    assert await page.js("return document.title;") == "lmsd"
    assert await page.shows("#served-count") == "(1 of 3 loaded)"
    await page.js("document.getElementById('served-box').scrollIntoView();")
    await page.screenshot("-models")
    await page.finish()


async def test_a_foreign_page_cannot_read_the_models(lmsd, emulator, page):
    """``GET /models`` is a safe request the guard lets through; the browser keeps its
    answer from another origin's page, since lmsd grants no CORS."""
    await page.open(emulator.url + "/")  # any other origin: the attacker's page
    outcome = await page.js("return fetch(arguments[0] + '/models').then(r => r.text())"
                            ".then(t => 'read ' + t, e => 'failed ' + e);", lmsd.admin_url)
    assert outcome.startswith("failed TypeError"), outcome
    await page.console_errors()  # the CORS refusal and the foreign page's own 404
    await page.finish()
