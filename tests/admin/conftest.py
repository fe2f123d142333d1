"""The ``page`` fixture: a headless Chromium tab (tests/support/browser.py), whose
screenshot is kept and whose console must stay free of errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.browser import Page, launch, require_browser

SHOTS: list[Path] = []


@pytest.fixture
def browser_available() -> None:
    """Outside trio, so a skip keeps its reason."""
    require_browser()


@pytest.fixture
async def page(browser_available: None, nursery: trio.Nursery,
               request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A tab; the test ends with ``await page.finish()`` (the screenshot and the console
    check, while the daemon still serves: pytest-trio cancels it as the test returns)."""
    driver = await trio.to_thread.run_sync(launch)
    tab = Page(driver, request.node.name)
    try:
        yield tab
    finally:
        if not tab.finished:  # the test failed: its last view is the evidence
            with contextlib.suppress(Exception):  # the browser may be what failed
                await tab.screenshot("-failed")
        SHOTS.extend(tab.screenshots)
        await trio.to_thread.run_sync(driver.quit)
    assert tab.finished, "a browser test must end with `await page.finish()`"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SHOTS:
        terminalreporter.write_sep("-", "dashboard screenshots")
        for path in SHOTS:
            terminalreporter.write_line(str(path))
