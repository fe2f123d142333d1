"""Structured logging: one line per event, as text or as JSON.

``event("request.end", session=..., ttft_ms=...)`` logs an event name plus fields.
Secrets never reach a log line: header values are never passed in, and bodies are
logged only at debug level.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from .protocol.text import escape_controls, json_safe, needs_quotes, quoted

logger = logging.getLogger("lmsd")


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"lmsd_fields": fields})


def _value(v: Any) -> str:
    """A field's value for a text line: control characters escaped (a client chose some of
    these values, and the line lands on a terminal)."""
    if isinstance(v, str):
        return quoted(v) if needs_quotes(v, ' "') else v
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return json_safe(json.dumps(v, ensure_ascii=False, default=str))


class _Exceptions(logging.Formatter):
    """A line with an exception carries its traceback only at ``log_level = debug``, else
    the exception in one line: a client can cause exceptions, tracebacks are kilobytes."""

    tracebacks = False

    def exception_text(self, record: logging.LogRecord) -> tuple[str, bool]:
        """The exception's text, and whether it is a whole traceback (lines of its own)."""
        if self.tracebacks:
            return self.formatException(record.exc_info), True  # type: ignore[arg-type]
        error = record.exc_info[1] if record.exc_info else None
        return f"{type(error).__name__}: {error}"[:300], False


class TextFormatter(_Exceptions):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "lmsd_fields", {})
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        text = f"{stamp} {record.levelname.lower():7} {escape_controls(record.getMessage())}"
        if fields:
            text += " " + " ".join(f"{escape_controls(k)}={_value(v)}"
                                   for k, v in fields.items())
        if record.exc_info:
            exc, whole = self.exception_text(record)
            text += ("\n" + escape_controls(exc, keep="\n")) if whole else " exc=" + _value(exc)
        return text


class JsonFormatter(_Exceptions):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, "lmsd_fields", {}),
        }
        if record.exc_info:
            data["exc"] = self.exception_text(record)[0]
        return json_safe(json.dumps(data, ensure_ascii=False, default=str))


class PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """A size-bounded log file (``log_max_bytes`` times ``1 + log_backups`` in all), made
    readable by its owner only: it names sessions, paths and models."""

    def _open(self) -> IO[str]:
        return open(self.baseFilename, self.mode, encoding=self.encoding,
                    errors=self.errors, opener=lambda path, flags: os.open(path, flags, 0o600))


def _use(handler: logging.Handler | None, name: str) -> None:
    """``handler`` as the ``name`` one (None: no such handler any more)."""
    for old in [h for h in logger.handlers if h.get_name() == name]:
        logger.removeHandler(old)
        old.close()
    if handler is not None:
        handler.set_name(name)
        logger.addHandler(handler)


def setup(level: str = "info", fmt: str = "auto", *, log_file: str = "",
          max_bytes: int = 10 * 1024 * 1024, backups: int = 3) -> None:
    """Configure the ``lmsd`` logger; ``auto`` is JSON under journald or launchd.

    With ``log_file`` the lines go to that file instead of stderr, rotated past
    ``max_bytes`` with ``backups`` old files kept: the launchd agent's log (launchd's own
    files grow forever; journald bounds its own), stderr then only has what Python prints
    when lmsd crashes."""
    if fmt == "auto":
        managed = os.environ.get("JOURNAL_STREAM") or os.environ.get("XPC_SERVICE_NAME", "0") != "0"
        fmt = "json" if managed else "text"
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    formatter.tracebacks = level.lower() == "debug"
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    problem = None
    if log_file:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            handler = PrivateRotatingFile(log_file, maxBytes=max_bytes, backupCount=backups,
                                          encoding="utf-8")
        except OSError as exc:
            problem = f"{exc.strerror or exc}"
    handler.setFormatter(formatter)
    handler.setLevel(level.upper())
    is_file = isinstance(handler, PrivateRotatingFile)
    _use(handler if is_file else None, "lmsd-file")
    _use(None if is_file else handler, "lmsd-stderr")
    logger.setLevel(logging.DEBUG)  # the level filters the log lines, not the event bus
    logger.propagate = False
    if problem is not None:
        event("log.file_failed", level=logging.WARNING, path=log_file, error=problem,
              effect="logging to stderr")


def set_level(level: str) -> None:
    """Change the log level (stderr and file) at run time (SIGHUP)."""
    for handler in logger.handlers:
        if handler.get_name() in ("lmsd-stderr", "lmsd-file"):
            handler.setLevel(level.upper())
            if isinstance(handler.formatter, _Exceptions):
                handler.formatter.tracebacks = level.lower() == "debug"
