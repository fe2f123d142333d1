"""The ``lmsd`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence

import trio

from . import __version__
from .bus import families, known_type
from .config import (
    FIELDS,
    FILE_ONLY,
    PARSERS,
    SECRET_KEYS,
    ConfigError,
    Settings,
    env_name,
    load_settings,
)
from .config.parsers import boolean
from .log import setup as setup_logging
from .ops import doctor, service
from .ops import env as env_cmd
from .ops import models as models_cmd
from .ops import sessions as sessions_cmd
from .ops import status as status_cmd
from .ops.client import Admin, ClientError
from .ops.codex_env import codex_config
from .ops.tail import tail as tail_events

# What each ``serve`` option does: the help line each setting carries (config/sections.py).
SERVE_HELP = {name: f.spec.help for name, f in FIELDS.items()}
BOOLEAN_KEYS = {name for name, f in FIELDS.items() if f.spec.parse is boolean}


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve", help="run the daemon",
        description="Serve the Anthropic Messages API in front of LM Studio. Every option "
        "is also an environment variable LMSD_<NAME> and a key in the TOML config file; "
        "flags beat the environment, which beats the file.",
    )
    defaults = Settings()
    for key in PARSERS:
        if key in SECRET_KEYS or key in FILE_ONLY:
            continue  # secrets only via environment or file, never on a command line
        flag = "--" + key.replace("_", "-")
        default = getattr(defaults, key)
        helptext = f"{SERVE_HELP.get(key, '')} (env {env_name(key)}; default {default!r})"
        if key == "upstream":
            serve.add_argument(flag, dest=key, action="append", default=None,
                               metavar="URL", help=helptext + "; give it several times "
                               "for several upstreams")
        elif key in BOOLEAN_KEYS:
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
                        help=f"{SERVE_HELP[address]} (env {env_name(address)}; default "
                        f"{default!r})")
    parser.add_argument("--config", dest="config", default=None, metavar="FILE",
                        help=f"{SERVE_HELP['config']} (env {env_name('config')})")
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
    sessions.add_argument("--limit", dest="limit", type=_positive_int, default=None,
                          metavar="N", help="only the N most recently used sessions")
    sessions.add_argument("--active", dest="active", action="store_true",
                          help=f"only sessions used in the last "
                          f"{sessions_cmd.ACTIVE_WINDOW // 60} minutes")
    models = _client_parser(sub, "models", "list the models each upstream can serve",
                            "List every model each upstream can serve, loaded or not: its "
                            "state, memory, context, idle time and requests in flight, and "
                            "each upstream's memory budget. " + token)
    models.add_argument("--json", dest="as_json", action="store_true",
                        help="print the raw JSON")
    reset = _client_parser(sub, "reset", "forget one session's chains, or all",
                           "Forget the chains and counters of SESSION_ID, or of every "
                           "session with --all. " + token)
    reset.add_argument("session", nargs="?", default=None, metavar="SESSION_ID",
                       help="the session to reset")
    reset.add_argument("--all", dest="all", action="store_true",
                       help="reset every session")
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
    tail.add_argument("--follow", dest="follow", action="store_true",
                      help="when the daemon stops or restarts, wait and reconnect instead "
                      "of exiting")
    record = _client_parser(sub, "record", "record a session's exchanges, or stop",
                            "Record every exchange of SESSION_ID (the client request, each "
                            "upstream request and raw stream, the client-visible stream) "
                            "under state_dir/recordings/, secrets left out; --stop ends "
                            "it. Replay a file with `lmsd replay`. " + token)
    record.add_argument("session", metavar="SESSION_ID", help="the session to record")
    record.add_argument("--stop", dest="stop", action="store_true",
                        help="stop recording the session")
    env = _client_parser(sub, "env", "print the environment for Claude Code",
                         'Print the exports that point Claude Code at lmsd and make it '
                         'compact before the loaded context overflows: eval "$(lmsd env)". '
                         "The context comes from the running daemon (else min_context).",
                         address="listen")
    env.add_argument("--shell", choices=("sh", "fish"), default="sh",
                     help="the syntax to print (default sh)")
    env.add_argument("--json", dest="as_json", action="store_true",
                     help='print the {"env": ...} block for ~/.claude/settings.json')
    names = env.add_mutually_exclusive_group()
    names.add_argument("--model", default=None, metavar="ID",
                       help="start Claude Code on this model id (ANTHROPIC_MODEL); default: "
                       "the loaded model's id, with Claude Code's lean system prompt")
    names.add_argument("--claude-names", action="store_true",
                       help="keep Claude's own model names (lmsd maps them) and let Claude "
                       "Code choose its system prompt by the name (older ids such as "
                       "claude-sonnet-4-6 get the full one: about 9k more tokens to prefill)")
    env.add_argument("--url", default=None, metavar="URL",
                     help="the proxy as the client machine reaches it, e.g. "
                     "https://gpu-box:19234 (env LMSD_URL; default: this machine's)")
    env.add_argument("--key-name", default=None, metavar="NAME",
                     help="send the client key of this name (from client_keys here); "
                     "default: the shell's $LMSD_API_KEY, if set")
    env.add_argument("--codex", action="store_true",
                     help="print the Codex CLI config.toml block instead (provider, "
                     "model, context window and auto-compaction limit)")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _check_client_args(args: argparse.Namespace) -> str | None:
    """What is wrong with a client command's arguments, as one line; None when fine."""
    if args.command == "reset":
        if args.session is None and not args.all:
            return "reset: name a SESSION_ID, or use --all to reset every session"
        if args.session is not None and args.all:
            return "reset: give a SESSION_ID or --all, not both"
    if args.command == "tail":
        unknown = [t for t in _tail_types(args) if not known_type(t)]
        if unknown:
            return (f"tail --type: unknown event type {unknown[0]!r}; the types are "
                    f"{', '.join(families())} and their members (see `lmsd tail --json`)")
    return None


def _tail_types(args: argparse.Namespace) -> list[str]:
    return [t for arg in args.types for t in arg.split(",") if t]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmsd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lmsd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _client_parsers(sub)
    doctor.add_parser(sub)
    service.add_parser(sub)
    replay = sub.add_parser(
        "replay", help="run recorded exchanges again, show what changed",
        description="Run each recorded exchange (from `lmsd record`) through this lmsd "
        "against its recorded upstream stream (no network) and show how the "
        "client-visible result differs; exit status 1 on a difference.")
    replay.add_argument("files", nargs="+", metavar="FILE", help="a recorded exchange")
    replay.add_argument("--against", default=None, metavar="URL",
                        help="send the recorded request to this live upstream instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        return doctor.run(args)  # it reports a bad config as one of its checks
    if args.command == "service":
        return service.run(args)
    if args.command == "replay":
        from .daemon.replay import main as replay_main

        return replay_main(args.files, against=args.against)
    flags = {k: v for k, v in vars(args).items() if k in PARSERS}
    try:
        settings = load_settings(flags)
    except ConfigError as exc:
        print(f"lmsd: config error: {exc}", file=sys.stderr)
        return 2
    if args.command != "serve":
        problem = _check_client_args(args)
        if problem is not None:
            print(f"lmsd: {problem}", file=sys.stderr)
            return 2
        return _run_client(args, settings)
    setup_logging(settings.log_level, settings.log_format, log_file=settings.log_file,
                  max_bytes=settings.log_max_bytes, backups=settings.log_backups)
    os.umask(0o077)  # what the daemon writes (store, recordings) is the user's alone
    from .daemon.supervisor import StartupError, run_daemon

    try:
        trio.run(run_daemon, settings, flags)
    except Exception as exc:  # trio wraps what the nurseries raised in ExceptionGroups
        leaves = list(_leaves(exc))
        for kind, what, status in ((ConfigError, "config error", 2),
                                   (StartupError, "cannot start", 1),
                                   (OSError, "cannot start", 1)):
            found = next((leaf for leaf in leaves if isinstance(leaf, kind)), None)
            if found is not None:
                print(f"lmsd: {what}: {found}", file=sys.stderr)  # one line, no traceback
                return status
        raise
    return 0


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, or ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _run_client(args: argparse.Namespace, settings: Settings) -> int:
    """Run a client subcommand: a failure is one line on stderr and exit status 1."""
    admin = Admin.from_settings(settings)
    try:
        if args.command == "status":
            status_cmd.status(admin, as_json=args.as_json)
        elif args.command == "sessions":
            sessions_cmd.sessions(admin, as_json=args.as_json, limit=args.limit,
                                  active=args.active)
        elif args.command == "models":
            models_cmd.models(admin, as_json=args.as_json)
        elif args.command == "reset":
            sessions_cmd.reset(admin, args.session)
        elif args.command == "record":
            sessions_cmd.record(admin, args.session, stop=args.stop)
        elif args.command == "tail":
            tail_events(admin, session=args.session, types=_tail_types(args),
                        as_json=args.as_json, replay=max(args.replay, 0),
                        follow=args.follow)
        elif args.command == "env" and args.model and (
                why := env_cmd.unserved_model(settings, args.model)):
            print(f"lmsd: env --model: {why}", file=sys.stderr)
            return 1
        elif args.command == "env" and args.codex:
            to = env_cmd.target(settings, args.url, args.key_name)
            print(codex_config(settings, env_cmd.live_context(admin, settings), args.model, to))
        elif args.command == "env":
            to = env_cmd.target(settings, args.url, args.key_name)
            context = env_cmd.live_context(admin, settings)
            if args.as_json and context.assumed:  # JSON has no comments: say it aside
                print(f"lmsd: {context.source}", file=sys.stderr)
            print(env_cmd.format_env(settings, "json" if args.as_json else args.shell,
                                     context, args.model, to, claude_names=args.claude_names))
        sys.stdout.flush()
    except ClientError as exc:
        print(f"lmsd: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (``lmsd tail | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
