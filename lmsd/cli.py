"""The ``lmsd`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import trio

from . import __version__, client, doctor, service
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


def _client_parser(sub: argparse._SubParsersAction, name: str, helptext: str,
                   description: str, *, address: str = "admin_listen") -> argparse.ArgumentParser:
    """A subcommand that finds lmsd through the same settings as ``serve``."""
    parser = sub.add_parser(name, help=helptext, description=description)
    default = getattr(Settings(), address)
    parser.add_argument("--" + address.replace("_", "-"), dest=address, default=None,
                        metavar="HOST:PORT",
                        help=f"env {env_name(address)}; default {default!r}")
    parser.add_argument("--config", dest="config", default=None, metavar="FILE",
                        help=f"a TOML config file; env {env_name('config')}")
    return parser


def _client_parsers(sub: argparse._SubParsersAction) -> None:
    token = "The admin token comes from LMSD_ADMIN_TOKEN or the config file's admin_token."
    status = _client_parser(sub, "status", "show the daemon's state",
                            "Show the daemon's upstream, models, watcher, requests and "
                            "session store. " + token)
    status.add_argument("--json", dest="as_json", action="store_true",
                        help="print the raw JSON")
    sessions = _client_parser(sub, "sessions", "list the chained sessions",
                              "List each session's agents with turns, chain hits, misses "
                              "and how much of the history was sent. " + token)
    sessions.add_argument("--json", dest="as_json", action="store_true",
                          help="print the raw JSON")
    reset = _client_parser(sub, "reset", "forget one session's chains, or all",
                           "Forget the chains and counters of SESSION_ID, or of every "
                           "session. " + token)
    reset.add_argument("session", nargs="?", default=None, metavar="SESSION_ID",
                       help="the session to reset; all sessions when omitted")
    tail = _client_parser(sub, "tail", "print live events until Ctrl-C",
                          "Print the daemon's events as they happen, one line each, until "
                          "Ctrl-C. " + token)
    tail.add_argument("--session", dest="session", default=None, metavar="ID",
                      help="only this session's events")
    tail.add_argument("--type", dest="types", action="append", default=[], metavar="T",
                      help="only events of type T or T.* (repeatable, or comma-separated)")
    tail.add_argument("--json", dest="as_json", action="store_true",
                      help="print each event as one line of JSON")
    tail.add_argument("--replay", dest="replay", type=int, default=10, metavar="N",
                      help="first show up to N recent matching events (default 10; 0: none)")
    env = _client_parser(sub, "env", "print the environment for Claude Code",
                         'Print the exports that point Claude Code at lmsd and make it '
                         'compact before the loaded context overflows: eval "$(lmsd env)". '
                         "The context comes from the running daemon (else min_context).",
                         address="listen")
    env.add_argument("--shell", choices=("sh", "fish"), default="sh",
                     help="the syntax to print (default sh)")
    env.add_argument("--json", dest="as_json", action="store_true",
                     help='print the {"env": ...} block for ~/.claude/settings.json')
    env.add_argument("--model", default=None, metavar="ID",
                     help="start Claude Code on this model id (ANTHROPIC_MODEL), e.g. a "
                     "local one; default: Claude's own names, which lmsd maps")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmsd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lmsd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _client_parsers(sub)
    doctor.add_parser(sub)
    service.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return doctor.run(args)  # it reports a bad config as one of its checks
    if args.command == "service":
        return service.run(args)
    flags = {k: v for k, v in vars(args).items() if k in PARSERS}
    try:
        settings = load_settings(flags)
    except ConfigError as exc:
        print(f"lmsd: config error: {exc}", file=sys.stderr)
        return 2
    if args.command != "serve":
        return _run_client(args, settings)
    setup_logging(settings.log_level, settings.log_format)
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


def _run_client(args: argparse.Namespace, settings: Settings) -> int:
    """Run a client subcommand: a failure is one line on stderr and exit status 1."""
    admin = client.Admin.from_settings(settings)
    try:
        if args.command == "status":
            client.status(admin, as_json=args.as_json)
        elif args.command == "sessions":
            client.sessions(admin, as_json=args.as_json)
        elif args.command == "reset":
            client.reset(admin, args.session)
        elif args.command == "tail":
            types = [t for arg in args.types for t in arg.split(",") if t]
            client.tail(admin, session=args.session, types=types, as_json=args.as_json,
                        replay=max(args.replay, 0))
        elif args.command == "env":
            context = client.live_context(admin, settings)
            if args.as_json and context.assumed:  # JSON has no comments: say it aside
                print(f"lmsd: {context.source}", file=sys.stderr)
            print(client.format_env(settings, "json" if args.as_json else args.shell,
                                    context, args.model))
        sys.stdout.flush()
    except client.ClientError as exc:
        print(f"lmsd: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (``lmsd tail | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
