"""``lmsd doctor``: check the setup end to end and say how to fix what is wrong.

:mod:`.runner` runs every check (one module per subject: :mod:`.upstream`, :mod:`.host`,
:mod:`.network`, :mod:`.shell`, :mod:`.context`, :mod:`.codex`), :mod:`.command` prints
them; each gives a :class:`.result.Result`.
"""

from .command import add_parser, format_results, run
from .result import Result
from .runner import daemon_upstreams, diagnose

__all__ = ["Result", "add_parser", "daemon_upstreams", "diagnose", "format_results", "run"]
