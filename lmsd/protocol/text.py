"""Text that reaches a terminal: control characters shown, never obeyed.

A value a client chose (a session's model name, say) is printed by ``lmsd tail`` and the
text log. Written raw, ``ESC [2J`` clears the user's terminal, ``ESC ]0;...BEL`` retitles
it, and U+202E reverses the rest of the line. Escaped, each shows as what it is.
And JSON text that reaches a client as UTF-8 (``json_utf8``), whatever the engine sent.
"""

from __future__ import annotations

import re

#: C0, DEL, C1, the line and paragraph separators, and the bidi marks, embeddings,
#: overrides and isolates.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                     "\u2066-\u2069]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str, *, keep: str = "") -> str:
    """``text`` with every control character written as ``\\x1b``, ``\\u202e``, ``\\n``
    (as ``repr`` does), except those in ``keep``."""
    if keep:
        return CONTROL.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)
    return CONTROL.sub(_escape, text)


def quoted(text: str) -> str:
    """``"text"``, backslashes and quotes escaped, control characters as ``\\x..``."""
    return '"' + escape_controls(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def needs_quotes(text: str, specials: str = ' "=') -> bool:
    """Would ``text`` be ambiguous or unsafe bare in a ``key=value`` line?"""
    return not text or any(c in text for c in specials) or CONTROL.search(text) is not None


def json_safe(text: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with the control characters it
    leaves raw (DEL, C1, bidi) as ``\\uXXXX``: still the same JSON, harmless to print."""
    return CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def json_utf8(text: str) -> bytes:
    """JSON text as UTF-8 for a client. Half a surrogate pair (an engine that cuts its
    text by UTF-16 units, as Node does, sends each half in its own chunk as a JSON escape)
    cannot be UTF-8: it goes out as the escape it came as, and the client's strings rejoin
    the pair. Raw, it was a crash: a stream cut mid-turn, a non-streamed answer a 500."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()
