"""A real headless Chromium for the dashboard tests, driven by selenium.

The browser is Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; ``LMSD_CHROMIUM``/``LMSD_CHROMEDRIVER`` override), never one
downloaded from a CDN. Without them, or without selenium, the tests skip, unless
``LMSD_REQUIRE_BROWSER=1`` (CI), where they fail. Every test leaves a screenshot under
``.ci/artifacts/screenshots/`` and fails on any console error (a script error, a refused
request, a CSP violation).

Selenium blocks, so each call runs in a worker thread (``Page.run``) while the daemon
under test keeps serving on the trio loop.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".ci" / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("LMSD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LMSD_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 15  # seconds a condition may take before the test fails (a limit, not a measure)


def _unavailable(reason: str) -> None:
    if os.environ.get("LMSD_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def require_browser() -> None:
    """Skip (fail under LMSD_REQUIRE_BROWSER=1) without a browser, its driver or selenium."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            _unavailable(f"no {path} (apt-get install chromium chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")


def launch() -> Any:
    """A headless Chromium session (call ``require_browser`` first)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-extensions", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class Page:
    """One browser tab on the dashboard; every method is awaited from trio."""

    def __init__(self, driver: Any, name: str) -> None:
        self.driver = driver
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]
        self.screenshots: list[Path] = []
        self.finished = False

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(partial(fn, *args))

    async def open(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def until(self, condition: Callable[[Any], Any], what: str) -> Any:
        """Wait (in the worker thread) until ``condition(driver)`` is truthy."""
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(self.driver, WAIT, poll_frequency=0.1)
        return await self.run(partial(wait.until, condition, f"waited for {what}"))

    async def js(self, script: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, script, *args)

    async def text(self, selector: str) -> str:
        return await self.js("const e = document.querySelector(arguments[0]);"
                             "return e ? e.innerText : null;", selector)

    async def shows(self, selector: str, needle: str = "") -> str:
        """Wait until ``selector`` exists and its text holds ``needle``; its text."""

        def seen(driver: Any) -> str | None:
            text = driver.execute_script("const e = document.querySelector(arguments[0]);"
                                         "return e ? e.innerText : null;", selector)
            return text if text is not None and needle in text else None

        return await self.until(seen, f"{selector!r} showing {needle!r}")

    async def gone(self, selector: str) -> None:
        await self.until(lambda d: d.execute_script(
            "return document.querySelector(arguments[0]) === null;", selector),
            f"{selector!r} to go")

    async def click(self, selector: str) -> None:
        await self.js("document.querySelector(arguments[0]).click();", selector)

    async def screenshot(self, suffix: str = "") -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}{suffix}.png"
        await self.run(self.driver.save_screenshot, str(path))
        self.screenshots.append(path)
        return path

    async def console_errors(self) -> list[str]:
        logs = await self.run(self.driver.get_log, "browser")
        return [entry["message"] for entry in logs if entry.get("level") == "SEVERE"]

    async def finish(self) -> None:
        """Keep the screenshot; fail on any console error so far."""
        await self.screenshot()
        errors = await self.console_errors()
        self.finished = True
        assert not errors, f"console errors: {errors}"

