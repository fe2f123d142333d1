"""``lmsd service install|uninstall|status``: run lmsd under systemd (user) or launchd.

- systemd (the default outside macOS): ``~/.config/systemd/user/lmsd.service``, managed
  with ``systemctl --user``.
- launchd (the default on macOS): ``~/Library/LaunchAgents/ai.lmsd.plist``, managed with
  ``launchctl`` in the ``gui/<uid>`` domain.

Files are rendered from ``systemd/lmsd.service`` and ``launchd/ai.lmsd.plist`` with the
absolute command of this lmsd. Installing again is harmless: an identical file is left
alone and every command is idempotent. ``--dry-run`` prints the file and the commands
and changes nothing. A failure is one line on stderr and exit status 1; when the service
manager is missing nothing is written.

The manager-specific parts: ``systemd`` and ``launchd`` (beside this module); what they
share (the command, the templates, dry runs): ``actions``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...config import ConfigError, Settings, env_name, load_settings
from .actions import NOT_RUNNING, Actions, ServiceError, health, lmsd_command
from .launchd import LABEL, launchd_install, launchd_status, launchd_uninstall
from .systemd import UNIT, systemd_install, systemd_status, systemd_uninstall

MANAGERS = ("systemd", "launchd")


def status(manager: str, settings: Settings, home: Path) -> int:
    """``status``: the manager's view, then ``/healthz``. Without a service manager (a
    container, say) the daemon may still run under another supervisor: say so, and let
    ``/healthz`` decide between 0 and NOT_RUNNING."""
    try:
        if manager == "systemd":
            return systemd_status(settings)
        return launchd_status(settings, home)
    except ServiceError as exc:
        print(f"{UNIT if manager == 'systemd' else LABEL}: {exc}")
    answering, line = health(settings)
    print(line)
    return 0 if answering else NOT_RUNNING


# -- the command line -----------------------------------------------------------------------


def default_manager() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``service`` subcommand."""
    parser = sub.add_parser(
        "service", help="install lmsd as a user service (systemd or launchd)",
        description="Install, remove or inspect lmsd as a service of the user's service "
        "manager: a systemd user unit (default on Linux) or a launchd agent (default on "
        "macOS). status exits 0 when the service runs and its /healthz answers, 3 when "
        "not; where there is no service manager (a container), 0 when /healthz answers.",
    )
    parser.add_argument("action", choices=("install", "uninstall", "status"),
                        help="install (or update) the service, uninstall it, or show its "
                        "status")
    parser.add_argument("--dry-run", dest="dry_run", action="store_true",
                        help="print the file and the commands, change nothing")
    parser.add_argument("--manager", choices=MANAGERS, default=None,
                        help=f"the service manager (default here: {default_manager()})")
    parser.add_argument("--admin-listen", dest="admin_listen", default=None,
                        metavar="HOST:PORT",
                        help=f"status: where the admin API is; env {env_name('admin_listen')}")
    parser.add_argument("--config", dest="config", default=None, metavar="FILE",
                        help=f"status: a TOML config file; env {env_name('config')}")


def run(args: argparse.Namespace) -> int:
    """Run ``lmsd service``; returns the exit status."""
    manager = getattr(args, "manager", None) or default_manager()
    action = args.action
    act = Actions(bool(getattr(args, "dry_run", False)))
    home = Path.home()
    try:
        if action == "status":
            flags = {k: getattr(args, k, None) for k in ("admin_listen", "config")}
            try:
                settings = load_settings(flags)
            except ConfigError as exc:
                print(f"lmsd: config error: {exc}", file=sys.stderr)
                return 2
            return status(manager, settings, home)
        if action == "install":
            command = lmsd_command()
            if manager == "systemd":
                return systemd_install(act, command)
            return launchd_install(act, command, home)
        if manager == "systemd":
            return systemd_uninstall(act)
        return launchd_uninstall(act, home)
    except ServiceError as exc:
        sys.stdout.flush()
        print(f"lmsd: {exc}", file=sys.stderr)
        return 1
