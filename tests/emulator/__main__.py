"""Run the emulator standalone: ``python -m tests.emulator --port 1234``."""

from __future__ import annotations

import argparse
import contextlib
import sys

import trio

from .app import serve_emulator
from .messages import FLAVORS
from .overflow import MODES, MORE_WORDINGS, WORDINGS
from .state import Emulator, default_models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--context-length", type=int, default=32768, help="loaded context")
    parser.add_argument("--prefill-ms-per-token", type=float, default=0.0)
    parser.add_argument("--token-delay-ms", type=float, default=0.0, help="delay between deltas")
    parser.add_argument("--usage-mode", choices=["lmstudio", "openai"], default="lmstudio")
    parser.add_argument("--instructions-mode", choices=["inherit", "replace"], default="inherit")
    parser.add_argument("--overflow-mode", choices=list(MODES), default="http400")
    parser.add_argument("--overflow-wording", choices=[*WORDINGS, *MORE_WORDINGS],
                        default="lmstudio")
    parser.add_argument("--messages-flavor", choices=list(FLAVORS), default="llama_server",
                        help="which server /v1/messages speaks like")
    parser.add_argument("--no-lmstudio-api", action="store_true",
                        help="no greeting and no /api/*: a plain server such as llama-server")
    parser.add_argument("--api-key", default=None,
                        help="require this API token, as LM Studio's Require Authentication")
    parser.add_argument("--jit", action="store_true",
                        help="a request naming a downloaded, unloaded model loads it (JIT)")
    parser.add_argument("--jit-context-length", type=int, default=4096,
                        help="the context a JIT load gives the model (LM Studio's default)")
    parser.add_argument("--load-delay", type=float, default=0.0,
                        help="seconds each load takes (REST API or JIT)")
    args = parser.parse_args(argv)
    models = default_models()
    models[0].context_length = args.context_length
    emu = Emulator(
        models,
        usage_mode=args.usage_mode,
        instructions_mode=args.instructions_mode,
        overflow_mode=args.overflow_mode,
        overflow_wording=args.overflow_wording,
        prefill_seconds_per_token=args.prefill_ms_per_token / 1000,
        token_delay=args.token_delay_ms / 1000,
        jit=args.jit,
        jit_context_length=args.jit_context_length,
    )
    emu.load_delay = args.load_delay

    emu.api_key = args.api_key
    emu.messages_flavor = args.messages_flavor
    emu.lmstudio_api = not args.no_lmstudio_api

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url = await serve_emulator(nursery, emu, host=args.host, port=args.port)
            print(f"LM Studio emulator listening on {url}", file=sys.stderr, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run)


if __name__ == "__main__":
    main()
