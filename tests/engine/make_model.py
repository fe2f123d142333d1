# ruff: noqa: E501  (the chat template is verbatim Jinja)
"""Generate a tiny random-weights Llama in GGUF, offline, in seconds.

Output is gibberish, but prefill, decoding, the KV/prefix cache and the server protocol
are real. A byte-level BPE tokenizer (8192 tokens, ChatML specials) is trained on the
Python standard library's sources; weights are random f16 (hidden 512, 4 layers, 8
heads, 4 KV heads); the chat template is Qwen2.5-style and renders tools, with a call's
arguments written as JSON whether they come as a string (llama-cpp-python passes the
client's) or as an object (llama-server's ``--jinja`` does, and refuses to start when
the template renders an object as anything but JSON). Output rows of
tokens that are not valid UTF-8 on their own are zeroed, so greedy decoding never emits a
lone byte that would make the server hold back all further text.

``--swa`` writes the same model as an OLMo-2 with a sliding window of ``SWA_WINDOW``
tokens on three layers of four (llama.cpp's SWA cache): the architecture family whose
slot restore llama-server cannot use (it keeps no context checkpoint across it).

    python make_model.py OUT.gguf [--swa]     (needs numpy, tokenizers, gguf)
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import gguf
import numpy as np
from tokenizers import ByteLevelBPETokenizer

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, CONTEXT = 8192, 512, 4, 8, 4, 1536, 32768
SWA_WINDOW = 128
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_DEFINED = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
                "<think>", "</think>"]
TEMPLATE = """{%- if tools %}<|im_start|>system
{%- if messages[0]['role'] == 'system' %}
{{ messages[0]['content'] }}
{%- endif %}

# Tools

You may call one or more functions to assist with the user query.

<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

For each function call, return a json object within <tool_call></tool_call> tags:
<tool_call>{"name": <function-name>, "arguments": <args-json-object>}</tool_call><|im_end|>
{%- elif messages[0]['role'] == 'system' %}<|im_start|>system
{{ messages[0]['content'] }}<|im_end|>
{%- endif %}
{%- for message in messages %}
{%- if message['role'] == 'system' and loop.first %}
{%- elif message['role'] == 'tool' %}
<|im_start|>user
<tool_response>
{{ message['content'] }}
</tool_response><|im_end|>
{%- elif message['role'] == 'assistant' %}
<|im_start|>assistant
{%- if message['content'] %}
{{ message['content'] }}
{%- endif %}
{%- for call in message['tool_calls'] or [] %}
<tool_call>{"name": "{{ call['function']['name'] }}", "arguments": {% if call['function']['arguments'] is string %}{{ call['function']['arguments'] }}{% else %}{{ call['function']['arguments'] | tojson }}{% endif %}}</tool_call>
{%- endfor %}<|im_end|>
{%- else %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
<|im_start|>assistant
{%- endif %}"""


def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: unicode char -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def train_tokenizer() -> ByteLevelBPETokenizer:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(str(p) for p in stdlib.glob("*.py"))[:150]
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train(files, vocab_size=VOCAB, min_frequency=2,
                    special_tokens=SPECIAL + USER_DEFINED, show_progress=False)
    return tokenizer


def main(out: Path, swa: bool = False) -> None:
    tokenizer = train_tokenizer()
    vocab = tokenizer.get_vocab()
    tokens = [""] * len(vocab)
    for text, index in vocab.items():
        tokens[index] = text
    merges = [" ".join(pair) for pair in tokenizer._tokenizer.model.get_merges()] if hasattr(
        tokenizer._tokenizer.model, "get_merges") else _merges(tokenizer)
    types = []
    decoder = byte_decoder()
    lone_bytes = []
    for index, text in enumerate(tokens):
        if text in SPECIAL:
            types.append(gguf.TokenType.CONTROL)
        elif text in USER_DEFINED:
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
            try:
                bytes(decoder[c] for c in text).decode("utf-8")
            except (UnicodeDecodeError, KeyError):
                lone_bytes.append(index)
    n_vocab = len(tokens)
    rng = np.random.default_rng(1234)

    def weight(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float16)

    writer = gguf.GGUFWriter(str(out), "olmo2" if swa else "llama")
    writer.add_name("lmsd-tiny-random")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_layer_norm_rms_eps(1e-6)
    if swa:
        writer.add_sliding_window(SWA_WINDOW)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(vocab["<|im_end|>"])
    writer.add_eot_token_id(vocab["<|im_end|>"])
    writer.add_pad_token_id(vocab["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(TEMPLATE)
    kv = HIDDEN // HEADS * KV_HEADS
    writer.add_tensor("token_embd.weight", weight(n_vocab, HIDDEN, scale=1.0))
    for layer in range(LAYERS):
        prefix = f"blk.{layer}."
        norm = "post_attention_norm" if swa else "attn_norm"
        writer.add_tensor(prefix + f"{norm}.weight", np.ones(HIDDEN, dtype=np.float32))
        if swa:
            writer.add_tensor(prefix + "attn_q_norm.weight", np.ones(HIDDEN, dtype=np.float32))
            writer.add_tensor(prefix + "attn_k_norm.weight", np.ones(kv, dtype=np.float32))
        writer.add_tensor(prefix + "attn_q.weight", weight(HIDDEN, HIDDEN))
        writer.add_tensor(prefix + "attn_k.weight", weight(kv, HIDDEN))
        writer.add_tensor(prefix + "attn_v.weight", weight(kv, HIDDEN))
        writer.add_tensor(prefix + "attn_output.weight", weight(HIDDEN, HIDDEN))
        norm = "post_ffw_norm" if swa else "ffn_norm"
        writer.add_tensor(prefix + f"{norm}.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor(prefix + "ffn_gate.weight", weight(FFN, HIDDEN))
        writer.add_tensor(prefix + "ffn_up.weight", weight(FFN, HIDDEN))
        writer.add_tensor(prefix + "ffn_down.weight", weight(HIDDEN, FFN))
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    output = weight(n_vocab, HIDDEN, scale=1.0)
    output[lone_bytes] = 0  # never the argmax: no lone invalid UTF-8 bytes
    writer.add_tensor("output.weight", output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _merges(tokenizer: ByteLevelBPETokenizer) -> list[str]:
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_model(tmp)
        lines = Path(tmp, "merges.txt").read_text(encoding="utf-8").splitlines()
    json.dumps(lines)
    return [line for line in lines if line and not line.startswith("#")]


if __name__ == "__main__":
    main(Path(sys.argv[1]), swa="--swa" in sys.argv[2:])
