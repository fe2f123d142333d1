import pytest

from lmsd.protocol.anthropic.errors import from_upstream
from lmsd.protocol.failures import OVERFLOW, classify, event_failure
from lmsd.protocol.models import map_model, models_page
from lmsd.protocol.tokens import estimate_tokens
from tests.support.fixtures import body

# -- upstream error mapping ------------------------------------------------------------------

LMS_OVERFLOW = ("Trying to keep the first 24071 tokens when context the overflows. However, "
                "the model is loaded with context length of only 8192 tokens, which is not "
                "enough. Try to load the model with a larger context length, or provide a "
                "shorter input")


@pytest.mark.parametrize("status", [400, 500, None])
def test_context_overflow_is_prompt_too_long_whatever_the_status(status):
    err = from_upstream(status, LMS_OVERFLOW)
    assert (err.status, err.type) == (400, "invalid_request_error")
    assert err.message == "prompt is too long: 24071 tokens > 8192 maximum"


def _overflow(message):
    failure = classify(message)
    return (failure.prompt_tokens, failure.context_limit) if failure.overflow else None


def test_other_overflow_wordings():
    assert _overflow("request (24071 tokens) exceeds the available context size "
                     "(8192 tokens)") == (24071, 8192)
    assert _overflow("This model's maximum context length is 4096 tokens. However, "
                     "your messages resulted in 5000 tokens.") == (5000, 4096)
    assert _overflow("Context size has been exceeded.") == (0, 0)
    assert _overflow("model crashed") is None
    err = from_upstream(500, "Context size has been exceeded.", estimate=9000)
    assert err.message.startswith("prompt is too long: 9000 tokens > ")


@pytest.mark.parametrize(("status", "code", "expected"), [
    (404, "model_not_found", (404, "not_found_error")),
    (400, "invalid_union", (400, "invalid_request_error")),
    (429, None, (529, "overloaded_error")),
    (503, None, (529, "overloaded_error")),
    (500, "server_error", (502, "api_error")),
    (None, "server_error", (502, "api_error")),
])
def test_status_mapping(status, code, expected):
    err = from_upstream(status, "something", code)
    assert (err.status, err.type) == expected
    assert "something" in err.message


# -- model mapping -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["claude-opus-5-5", "claude-sonnet-4-6[1m]", "sonnet",
                                  "claude-3-5-haiku-20241022", "anthropic/claude"])
def test_claude_names_go_to_the_loaded_model(name):
    assert map_model(name, mapping={}, default="", loaded=["qwen3"]) == "qwen3"
    assert map_model(name, mapping={}, default="cfg", loaded=["qwen3"]) == "cfg"
    assert map_model(name, mapping={}, default="", loaded=[]) is None


def test_mapping_by_family_and_exact_name_and_passthrough():
    mapping = {"haiku": "small", "claude-opus-5-5": "big"}
    assert map_model("claude-haiku-4-5-20251001", mapping=mapping, default="d",
                     loaded=[]) == "small"
    assert map_model("claude-opus-5-5", mapping=mapping, default="d", loaded=[]) == "big"
    assert map_model("claude-sonnet-4-6", mapping=mapping, default="d", loaded=[]) == "d"
    assert map_model("qwen/qwen3-coder-30b", mapping=mapping, default="d",
                     loaded=["x"]) == "qwen/qwen3-coder-30b"


def test_models_page_shape_and_paging():
    page = models_page(["qwen3", "gemma"], target="qwen3", limit=1000)
    ids = [m["id"] for m in page["data"]]
    assert ids[0].startswith("claude-") and ids[-2:] == ["qwen3", "gemma"]
    for m in page["data"]:
        assert set(m) == {"type", "id", "display_name", "created_at"} and m["type"] == "model"
    assert page["has_more"] is False
    assert (page["first_id"], page["last_id"]) == (ids[0], "gemma")
    first = models_page(["qwen3"], target=None, limit=2)
    assert first["has_more"] is True and len(first["data"]) == 2
    second = models_page(["qwen3"], target=None, limit=2, after_id=first["last_id"])
    assert second["data"][0]["id"] == ids[2]


# -- token estimate ----------------------------------------------------------------------------

def test_estimate_counts_system_tools_and_messages():
    raw = body("basic_json")
    full = estimate_tokens(raw["system"], raw["messages"], raw["tools"])
    no_tools = estimate_tokens(raw["system"], raw["messages"], [])
    assert no_tools < full
    assert full - no_tools > 31931 / 4.5  # the 32 KB of tools count
    assert 10_000 < full < 25_000  # ~49 KB of JSON


# -- configuration -----------------------------------------------------------------------------

def _reports_overflow(upstream_event):
    return event_failure(upstream_event).kind == OVERFLOW


def test_overflow_detection_in_error_events_of_any_shape():
    assert _reports_overflow({"type": "error", "message": "Context size has been exceeded."})
    assert _reports_overflow({"type": "response.failed", "response": {"error": {
        "message": "Trying to keep the first 9 tokens when context the overflows. However, "
                   "the model is loaded with context length of only 4 tokens"}}})
    assert not _reports_overflow({"type": "response.failed", "response": "garbage"})
    assert not _reports_overflow({"type": "error", "message": "previous_response_not_found"})


def test_models_carry_the_loaded_context_of_the_model_behind_each_id():
    from lmsd.protocol.models import served_contexts

    ids = ["claude-opus-5-5", "claude-haiku-4-5", "qwen3", "gemma", "small"]
    contexts = served_contexts(ids, contexts={"qwen3": 65536, "small": 32768},
                               loaded=["qwen3", "small"], mapping={"haiku": "small"},
                               default="")
    assert contexts == {"claude-opus-5-5": 65536, "claude-haiku-4-5": 32768,
                        "qwen3": 65536, "small": 32768}  # gemma is not loaded
    page = models_page(["qwen3", "gemma"], target="qwen3", contexts=contexts, limit=1000)
    by_id = {e["id"]: e for e in page["data"]}
    assert by_id["claude-opus-5-5"]["context_window"] == 65536
    assert by_id["claude-opus-5-5"]["runtime"] == {"max_input_tokens": 65536}
    assert by_id["qwen3"]["runtime"] == {"max_input_tokens": 65536}
    assert "context_window" not in by_id["gemma"] and "runtime" not in by_id["gemma"]


@pytest.mark.parametrize("default, loaded, expected", [
    ("", ["qwen3"], "qwen3"), ("cfg", ["qwen3"], "cfg"), ("", [], None)])
def test_local_model_is_the_loaded_model_like_a_claude_name(default, loaded, expected):
    assert map_model("local-model", mapping={}, default=default, loaded=loaded) == expected
    assert map_model("local-model", mapping={"local-model": "m"}, default=default,
                     loaded=loaded) == "m"
