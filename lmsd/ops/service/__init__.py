"""``lmsd service install|uninstall|status``: run lmsd under systemd (user) or launchd.

:mod:`.command` is the command line; :mod:`.systemd` and :mod:`.launchd` what each
manager needs; :mod:`.actions` what they share (the command, the templates, dry runs).
"""

from .command import add_parser, run

__all__ = ["add_parser", "run"]
