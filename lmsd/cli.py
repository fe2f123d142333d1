"""The ``lmsd`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from . import __version__
from .config import PARSERS, SECRET_KEYS, ConfigError, Settings, env_name, load_settings
from .log import setup as setup_logging

BOOLEAN_KEYS = {"strip_billing_header", "chaining", "watch"}


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve", help="run the daemon",
        description="Serve the Anthropic Messages API in front of LM Studio. Every option "
        "is also an environment variable LMSD_<NAME> and a key in the TOML config file; "
        "flags beat the environment, which beats the file.",
    )
    defaults = Settings()
    for key in PARSERS:
        if key in SECRET_KEYS:
            continue  # secrets only via environment or file, never on a command line
        flag = "--" + key.replace("_", "-")
        default = getattr(defaults, key)
        helptext = f"env {env_name(key)}; default {default!r}"
        if key in BOOLEAN_KEYS:
            serve.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction,
                               default=None, help=helptext)
        else:
            serve.add_argument(flag, dest=key, default=None, metavar=key.upper(),
                               help=helptext)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmsd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lmsd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = load_settings(flags)
    except ConfigError as exc:
        print(f"lmsd: config error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        from .server import run_daemon

        try:
            trio.run(run_daemon, settings, flags)
        except ConfigError as exc:
            print(f"lmsd: config error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"lmsd: cannot start: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
