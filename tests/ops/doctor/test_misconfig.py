"""`lmsd doctor` on a misconfigured upstream: a key LM Studio wants, an upstream URL ending in
/v1 (what the daemon does with them is in tests/fronts/test_misconfig.py)."""

from __future__ import annotations

import httpx
import pytest

from lmsd.config import load_settings
from lmsd.ops.doctor import diagnose
from lmsd.ops.doctor.upstream import check_api, check_models
from lmsd.upstreams import discovery
from lmsd.upstreams.discovery import Found
from tests.support.upstream_key import KEY, NEEDS_KEY


async def test_doctor_fails_a_missing_or_refused_key_with_the_fix(emulator, tmp_path):
    emulator.api_key = KEY
    found = Found(emulator.url, "config", True)
    async with httpx.AsyncClient() as client:
        for key, start in (("", NEEDS_KEY), ("sk-lm-Zz99:Yy88", "LM Studio refused the API key")):
            settings = load_settings({"upstream": emulator.url, "upstream_api_key": key}, {})
            result = await check_models(settings, found, client)
            assert (result.check, result.status) == ("api_key", "fail")
            assert result.detail.startswith(start) and "Manage Tokens" in (result.fix or "")
        settings = load_settings({"upstream": emulator.url, "upstream_api_key": KEY}, {})
        result = await check_models(settings, found, client)
        assert (result.check, result.status) == ("model", "ok")


@pytest.fixture
def no_lmstudio_here(monkeypatch, tmp_path, dead_port):
    monkeypatch.setattr(discovery, "DEFAULT_PORT", dead_port)
    monkeypatch.setenv("LMSTUDIO_HOME", str(tmp_path / "no-lmstudio"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))


async def test_doctor_agrees_with_the_daemon_on_a_v1_upstream(emulator, tmp_path,
                                                              no_lmstudio_here):
    settings = load_settings({"upstream": emulator.url + "/v1",
                              "state_dir": str(tmp_path / "state")}, {})
    results = {r.check: r for r in await diagnose(settings, {"HOME": str(tmp_path)})}
    assert results["lmstudio"].status == "ok" and emulator.url in results["lmstudio"].detail
    assert results["api"].detail.startswith("responses")
    assert results["model"].status == "ok"
    assert results["config"].status == "warn"
    assert results["config"].fix == f"set upstream = {emulator.url!r}"
    async with httpx.AsyncClient() as client:
        api = await check_api(settings, Found(settings.upstream, "config", True), client)
    assert api.detail.startswith("responses")
