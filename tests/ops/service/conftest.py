"""The ``lmsd service`` tests' fixtures: a fake HOME, the fake service managers on PATH,
a ``/healthz`` that answers."""

from __future__ import annotations

import os
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.ops.service.fakes import Fakes, Healthz


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake HOME, and an environment free of LMSD_* and XDG_CONFIG_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("LMSD_") or name == "XDG_CONFIG_HOME":
            monkeypatch.delenv(name)
    return home


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> Fakes:
    return Fakes(tmp_path / "fakes", monkeypatch)


@pytest.fixture
def healthz():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
