"""A live lmsd (both ports) and its emulator per fuzz module: what one module's requests
change (a session set to record, say) does not reach another's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.live import Live, live_lmsd


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_lmsd(tmp_path_factory.mktemp("fuzz")) as server:
        server.catch.take()  # startup's own lines are not the fuzzers' business
        yield server
