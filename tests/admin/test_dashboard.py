"""The dashboard at the admin API's ``/``: one self-contained page, behind the same token
and Host/Origin checks as every other admin route (the browser tests drive it live)."""

from __future__ import annotations

import re

import httpx

from lmsd.admin.dashboard import page
from tests.support.daemon import admin_get

ASSET_BUDGET = 40 * 1024  # the issue asks for small vendored assets: a few tens of KB


def test_the_page_inlines_its_script_and_style_and_allows_nothing_else():
    body, headers = page()
    text = body.decode()
    assert "/*JS*/" not in text and "/*CSS*/" not in text
    assert "<script src" not in text and "<link rel=\"stylesheet\"" not in text
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), "no CDN, no remote URL"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert csp.count("'sha256-") == 2 and "unsafe-inline" not in csp
    assert headers["Referrer-Policy"] == "no-referrer"
    assert len(body) < ASSET_BUDGET, len(body)


async def test_served_at_the_root_without_a_token(lmsd):
    answer = await admin_get(lmsd, "/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "<title>lmsd</title>" in answer.text
    assert "Content-Security-Policy" in answer.headers


async def test_behind_the_token_when_one_is_set(start_lmsd, emulator):
    server = await start_lmsd(emulator.url, admin_token="hunter2")
    assert (await admin_get(server, "/")).status_code == 401
    assert (await admin_get(server, "/?token=wrong")).status_code == 401
    assert (await admin_get(server, "/", headers={
        "Authorization": "Bearer hunter2"})).status_code == 200
    opened = await admin_get(server, "/?token=hunter2")
    assert opened.status_code == 200 and "hunter2" not in opened.text
    # ?token= opens the page only: the API still wants the header.
    assert (await admin_get(server, "/status?token=hunter2")).status_code == 401


async def test_refused_under_a_foreign_host(lmsd):
    answer = await admin_get(lmsd, "/", headers={"Host": "evil.example"})
    assert answer.status_code == 403 and "DNS rebinding" in answer.text


async def test_its_reset_is_refused_from_a_foreign_origin(lmsd):
    """A link from elsewhere may open the page (it cannot be framed: frame-ancestors), but
    the page's actions, sent from another origin, are refused."""
    async with httpx.AsyncClient(base_url=lmsd.admin_url) as http:
        reset = await http.delete("/sessions/x", headers={"Origin": "https://evil.example"})
    assert reset.status_code == 403, reset.text
    assert "frame-ancestors 'none'" in (await admin_get(lmsd, "/")).headers[
        "Content-Security-Policy"]


def test_the_static_files_ship_as_package_data():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["lmsd.admin"]
    static = root / "lmsd" / "admin" / "static"
    shipped = {p for g in globs for p in (root / "lmsd" / "admin").glob(g)}
    assert set(static.iterdir()) <= shipped
    assert {p.name for p in static.iterdir()} == {"index.html", "dash.js", "dash.css"}
