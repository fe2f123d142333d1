from lmsd.protocol.servers.lmstudio import (
    OPENAI,
    V0,
    V1,
    LoadedModel,
    models_from_lms_ps,
    parse_models,
)


def test_v1_loaded_instances_with_context():
    data = {"models": [
        {"type": "llm", "key": "qwen", "max_context_length": 262144, "loaded_instances": [
            {"id": "qwen", "config": {"context_length": 4096}},
            {"id": "qwen:2", "config": {"context_length": 32768}}]},
        {"type": "llm", "key": "gemma", "loaded_instances": []},
        {"type": "embedding", "key": "nomic", "loaded_instances": [{"id": "nomic"}]},
        "garbage"]}
    listing = parse_models(V1, data)
    assert listing.loaded == [LoadedModel("qwen", "qwen", 4096, 262144),
                              LoadedModel("qwen", "qwen:2", 32768, 262144)]
    assert listing.known == ["qwen", "gemma"]
    assert listing.max_contexts == {"qwen": 262144}  # gemma's is not said


def test_v1_max_context_of_a_model_not_loaded():
    """What lmsd caps a load on request at (``min_context`` may exceed a small model's)."""
    listing = parse_models(V1, {"models": [
        {"type": "llm", "key": "gemma", "max_context_length": 8192, "loaded_instances": []}]})
    assert listing.loaded == [] and listing.max_contexts == {"gemma": 8192}


def test_v0_rows_deduplicated():
    data = {"data": [
        {"id": "qwen", "type": "llm", "state": "not-loaded", "max_context_length": 9},
        {"id": "qwen", "type": "llm", "state": "loaded", "loaded_context_length": 8192,
         "max_context_length": 9},
        {"id": "vis", "type": "vlm", "state": "not-loaded"},
        {"id": "emb", "type": "embeddings", "state": "loaded"}]}
    listing = parse_models(V0, data)
    assert listing.loaded == [LoadedModel("qwen", "qwen", 8192, 9)]
    assert listing.known == ["qwen", "vis"]
    assert listing.max_contexts == {"qwen": 9}


def test_openai_list_counts_every_model_as_serving():
    listing = parse_models(OPENAI, {"object": "list", "data": [{"id": "a"}, {"id": "b"}, 3]})
    assert [m.instance_id for m in listing.loaded] == listing.known == ["a", "b"]


def test_not_a_listing():
    for path in (V1, V0, OPENAI):
        assert parse_models(path, None) is None
        assert parse_models(path, {"error": "not found"}) is None


def test_lms_ps_rows():
    listing = models_from_lms_ps([
        {"type": "llm", "identifier": "q", "modelKey": "qwen", "contextLength": 4096,
         "maxContextLength": 32768},
        {"type": "embedding", "identifier": "e"}])
    assert listing.loaded == [LoadedModel("qwen", "q", 4096, 32768)]


def test_llama_cpp_python_is_known_by_its_listing():
    """llama-cpp-python's ``/v1/models`` lists its models ``owned_by: "me"``: a server
    that serves one request at a time. Other servers' listings say nothing of it."""
    from lmsd.protocol.servers.engines import engine_of
    from lmsd.protocol.servers.engines import one_at_a_time as said

    def one_at_a_time(listing):
        return said(engine_of(listing=listing))

    llama_cpp_python = {"object": "list", "data": [
        {"id": "tiny-llama", "object": "model", "owned_by": "me", "permissions": []}]}
    assert "llama-cpp-python" in (one_at_a_time(llama_cpp_python) or "")
    for other in ({"object": "list", "data": [{"id": "m", "owned_by": "llamacpp"}]},
                  {"object": "list", "data": [{"id": "m", "owned_by": "vllm"}]},
                  {"object": "list", "data": []}, None, {"data": "x"}):
        assert one_at_a_time(other) is None
