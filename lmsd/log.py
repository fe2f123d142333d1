"""Structured logging: one line per event, as text or as JSON.

``event("request.end", session=..., ttft_ms=...)`` logs an event name plus fields.
Secrets never reach a log line: header values are never passed in, and bodies are
logged only at debug level.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

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


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "lmsd_fields", {})
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        text = f"{stamp} {record.levelname.lower():7} {escape_controls(record.getMessage())}"
        if fields:
            text += " " + " ".join(f"{escape_controls(k)}={_value(v)}"
                                   for k, v in fields.items())
        if record.exc_info:
            text += "\n" + escape_controls(self.formatException(record.exc_info), keep="\n")
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, "lmsd_fields", {}),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json_safe(json.dumps(data, ensure_ascii=False, default=str))


def setup(level: str = "info", fmt: str = "auto") -> None:
    """Configure the ``lmsd`` logger; ``auto`` is JSON under journald or launchd."""
    if fmt == "auto":
        managed = os.environ.get("JOURNAL_STREAM") or os.environ.get("XPC_SERVICE_NAME", "0") != "0"
        fmt = "json" if managed else "text"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.setLevel(level.upper())
    handler.set_name("lmsd-stderr")
    logger.handlers[:] = [h for h in logger.handlers if h.get_name() != "lmsd-stderr"]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)  # the level filters the stderr lines, not the event bus
    logger.propagate = False


def set_level(level: str) -> None:
    """Change the stderr log level at run time (SIGHUP)."""
    for handler in logger.handlers:
        if handler.get_name() == "lmsd-stderr":
            handler.setLevel(level.upper())
