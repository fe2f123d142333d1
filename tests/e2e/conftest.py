"""Fixtures of the llama-server end-to-end tests (tests/e2e/test_llama_server*.py): a real
llama-server on a tiny random model, and lmsd in front of it."""

from __future__ import annotations

import anthropic
import pytest

from tests.engine.llama_server import start_llama_server
from tests.engine.server import MODEL_ALIAS


@pytest.fixture
async def llama(nursery):
    return await start_llama_server(nursery)


@pytest.fixture
async def llama_lmsd(start_lmsd, llama):
    """lmsd on llama-server's Chat Completions (``auto`` picks its /v1/messages: that
    kind has its own tests, test_llama_server_messages.py)."""
    return await start_lmsd(llama.url, model=MODEL_ALIAS, upstream_api="chat")


@pytest.fixture
async def tool_llama(nursery):
    """A llama-server whose random model emits one valid call under ``required``."""
    return await start_llama_server(nursery, forced_tool_calls=True)


@pytest.fixture
async def claude_client(llama_lmsd):
    async with anthropic.AsyncAnthropic(base_url=llama_lmsd.url, api_key="x", max_retries=0,
                                        timeout=300) as client:
        yield client
