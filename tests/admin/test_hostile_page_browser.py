"""A hostile web page, in a real Chromium, against a proxy that records a session: its
large ``text/plain`` POST (a "simple" request, sent without any CORS preflight) is
refused on its headers, and lmsd reads none of its body (today it read all of it first:
400 MB took lmsd from 59 MB to 1.6 GB)."""

from __future__ import annotations

from tests.fronts.test_ingress import QUEUED, server_reads  # noqa: F401 - a fixture
from tests.support.daemon import next_event

BODY_MIB = 64

POST = """
const [url, mib] = arguments;
const body = "x".repeat(mib * 1024 * 1024);
return fetch(url + "/v1/messages", {method: "POST", mode: "no-cors", body})
  .then(r => "answered " + r.type, e => "failed " + e);
"""


async def test_a_foreign_pages_large_post_is_refused_unread(
        start_lmsd, emulator, page, server_reads):  # noqa: F811 - the fixture
    lmsd = await start_lmsd(emulator.url, record_sessions="rec")
    await page.open(emulator.url + "/")  # any other origin: the attacker's page
    with lmsd.bus.subscribe(types=("request.refused",), replay=0) as sub:
        outcome = await page.js(POST, lmsd.url, BODY_MIB)
        refused = await next_event(sub, "request.refused")
    assert outcome.startswith(("answered", "failed")), outcome
    assert refused["status"] == 403 and refused["origin"] == emulator.url
    assert server_reads["before"] == 0
    assert server_reads["total"] <= QUEUED
    await page.console_errors()  # the refused POST and the foreign page's own 404
    await page.finish()
