"""The engine named by what it said (issue 23: not always "LM Studio")."""

from __future__ import annotations

import pytest

from lmsd.protocol.servers.engines import (
    LLAMA_CPP_PYTHON,
    LLAMA_SERVER,
    LM_STUDIO,
    OLLAMA,
    UNKNOWN,
    VLLM,
    engine_of,
)
from tests.emulator.auth import MISSING_TOKEN


def listing(owner: str) -> dict:
    return {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": owner}]}


@pytest.mark.parametrize(("evidence", "engine"), [
    ({"greeting": True}, LM_STUDIO),
    ({"said": MISSING_TOKEN}, LM_STUDIO),  # its 401 names it
    ({"props": {"default_generation_settings": {"n_ctx": 8192}}}, LLAMA_SERVER),
    ({"listing": listing("llamacpp")}, LLAMA_SERVER),
    ({"listing": listing("vllm")}, VLLM),
    ({"listing": listing("library")}, OLLAMA),
    ({"listing": listing("me")}, LLAMA_CPP_PYTHON),  # and it serves one at a time
    ({"listing": listing("organization_owner")}, UNKNOWN),
    ({"listing": {"data": "nonsense"}, "props": {"error": "File Not Found"}}, UNKNOWN),
    ({"said": "Unauthorized"}, UNKNOWN),
    ({}, UNKNOWN),
])
def test_engine_of(evidence, engine):
    assert engine_of(**evidence) == engine
