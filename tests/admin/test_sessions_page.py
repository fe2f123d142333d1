"""3000 sessions do not freeze the dashboard (issue 22): ``GET /sessions`` answers a page
of them on request (``?limit=&offset=&q=``, with the total), and the page shows the 100
most recent, the count, "Show more" and a filter, checked in a real Chromium."""

from __future__ import annotations

import time

import httpx
import pytest

from lmsd.sessions.store import SessionStats

CARDS = "return document.querySelectorAll('article.session').length;"


def many_sessions(store, n: int) -> None:
    """``n`` sessions, ``s-0000`` the most recent (counters only, as after a restart)."""
    now = time.time()
    for i in range(n):
        store.stats[(f"s-{i:04d}", "main", "m")] = SessionStats(
            turns=1, created=now - i, last_used=now - i, fronts=["anthropic"])


async def test_sessions_come_a_page_at_a_time(lmsd):
    many_sessions(lmsd.store, 250)
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        everything = (await http.get("/sessions")).json()
        assert len(everything["sessions"]) == 250 and "total" not in everything  # the CLI's
        first = (await http.get("/sessions?limit=100")).json()
        assert first["total"] == 250 and len(first["sessions"]) == 100
        assert [s["session"] for s in first["sessions"][:2]] == ["s-0000", "s-0001"]
        last = (await http.get("/sessions?limit=100&offset=200")).json()
        assert [s["session"] for s in last["sessions"]][-1] == "s-0249"
        assert len(last["sessions"]) == 50
        found = (await http.get("/sessions?q=S-012")).json()
        assert found["total"] == 10 and {s["session"] for s in found["sessions"]} == {
            f"s-{i:04d}" for i in range(120, 130)}
        for bad in ("limit=-1", "limit=abc", "limit=100000", "offset=1e3"):
            answer = await http.get(f"/sessions?{bad}")
            assert answer.status_code == 400, bad
            assert bad.split("=")[0] in answer.json()["error"]["message"]


@pytest.mark.browser
async def test_three_thousand_sessions_show_the_most_recent_hundred(lmsd, page):
    many_sessions(lmsd.store, 3000)
    await page.open(lmsd.admin_url + "/")
    await page.shows("#session-count", "(3000)")
    assert "showing the 100 most recent of 3000" in await page.text("#session-range")
    assert await page.js(CARDS) == 100
    assert "s-0000" in await page.text("article.session")  # the most recent first
    await page.click("#more-sessions")
    await page.shows("#session-range", "showing the 200 most recent of 3000")
    assert await page.js(CARDS) == 200
    await page.js("const f = document.getElementById('s-filter'); f.value = 's-2999';"
                  "f.dispatchEvent(new Event('input'));")
    await page.until(lambda d: d.execute_script(CARDS) == 1, "the filter to leave one card")
    assert await page.text("#session-count") == "(1)"
    assert await page.js("return document.getElementById('more-sessions').hidden;")
    await page.finish()
