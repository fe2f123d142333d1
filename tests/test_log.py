import json
import logging

import pytest

from lmsd import log


class Captured:
    def __init__(self, capsys):
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def captured(capsys):
    logger = log.logger
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield Captured(capsys)
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_json_lines_with_fields(captured):
    log.setup("info", "json")
    log.event("request.end", session="s1", ttft_ms=12.5, note="two words")
    log.event("debug.detail", level=logging.DEBUG, x=1)  # below the level: not printed
    [line] = captured.getvalue().splitlines()
    data = json.loads(line)
    assert data["event"] == "request.end" and data["level"] == "info"
    assert (data["session"], data["ttft_ms"], data["note"]) == ("s1", 12.5, "two words")


def test_json_lines_leave_no_control_character_raw(captured):
    """JSON escapes C0 itself; C1 and bidi overrides it leaves raw, which a terminal
    showing the journal would obey: they go out as \\uXXXX, the same JSON."""
    log.setup("info", "json")
    hostile = "a\x1b[2Jb\x9bc\u202ed\x7f"
    log.event("session.config", model=hostile)
    [line] = captured.getvalue().splitlines()
    assert not any(c in line for c in "\x1b\x9b\u202e\x7f")
    assert json.loads(line)["model"] == hostile


def test_text_lines(captured):
    log.setup("debug", "text")
    log.event("model.loaded", model="qwen/qwen3", context_length=4096)
    line = captured.getvalue().strip()
    assert line.endswith("info    model.loaded model=qwen/qwen3 context_length=4096")


@pytest.mark.parametrize(("environ", "expected"), [
    ({"JOURNAL_STREAM": "8:1234"}, "json"), ({"XPC_SERVICE_NAME": "ai.lmsd"}, "json"),
    ({}, "text")])
def test_auto_is_json_under_journald_or_launchd(captured, monkeypatch, environ, expected):
    for key in ("JOURNAL_STREAM", "XPC_SERVICE_NAME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    log.setup("info", "auto")
    log.event("x.y", a=1)
    line = captured.getvalue().strip()
    assert line.startswith("{") == (expected == "json")


def test_the_level_changes_at_run_time(captured):
    log.setup("warning", "json")
    log.event("quiet")
    log.set_level("info")
    log.event("heard")
    assert [json.loads(line)["event"] for line in captured.getvalue().splitlines()] == ["heard"]


#: What a client may put in a session's model: clear the screen, retitle the terminal, ring
#: the bell; a C1 CSI; DEL; a bidi override that reverses the rest of the line.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\x7f\u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e")


def test_text_lines_escape_control_characters(captured):
    log.setup("debug", "text")
    log.event("session.config", session="s1", model=HOSTILE, tools=[HOSTILE],
              note="a\nb")
    out = captured.getvalue()
    assert out.count("\n") == 1  # one event, one line
    assert not any(c in out for c in RAW)
    assert r'model="\x1b[2J\x1b]0;pwned\x07\x9b31m\x7f\u202eevil"' in out
    assert r'tools=["\u001b[2J\u001b]0;pwned\u0007\u009b31m\u007f\u202eevil"]' in out
    assert r'note="a\nb"' in out
    assert json.loads(out.split("tools=", 1)[1].split(" note=")[0]) == [HOSTILE]


def test_text_traceback_lines_escape_control_characters(captured):
    log.setup("debug", "text")
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        log.logger.exception("request.internal_error")
    out = captured.getvalue()
    assert "Traceback" in out and "ValueError: \\x1b[2J" in out
    assert not any(c in out for c in RAW)


def test_the_log_file_rotates_and_stays_bounded(captured, tmp_path):
    """The launchd agent's log (LMSD_LOG_FILE): at most log_max_bytes per file and
    log_backups old files, private to its owner; nothing on stderr."""
    path = tmp_path / "logs" / "lmsd.log"
    log.setup("info", "json", log_file=str(path), max_bytes=4096, backups=2)
    try:
        for n in range(2000):  # about 150 KB of lines
            log.event("request.rejected", level=logging.WARNING, n=n, path="/x" * 10)
    finally:
        for handler in log.logger.handlers:
            handler.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["lmsd.log", "lmsd.log.1", "lmsd.log.2"]
    for name in files:
        assert (path.parent / name).stat().st_size <= 4096
        assert (path.parent / name).stat().st_mode & 0o777 == 0o600
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["n"] == 1999
    assert captured.getvalue() == ""


def test_a_log_file_that_cannot_be_opened_falls_back_to_stderr(captured, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    log.setup("info", "text", log_file=str(blocker / "lmsd.log"))
    log.event("daemon.listening")
    err = captured.getvalue()
    assert "log.file_failed" in err and "daemon.listening" in err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_traceback_only_at_debug(captured, fmt):
    """Any client can make an exception happen: at the default level it is one line."""
    log.setup("info", fmt)
    try:
        raise ValueError("bad " + "x" * 1000)
    except ValueError:
        log.logger.exception("request.internal_error")
    line = captured.getvalue()
    assert "Traceback" not in line and line.count("\n") == 1
    assert "ValueError: bad x" in line and len(line) < 500
    log.set_level("debug")
    try:
        raise ValueError("bad")
    except ValueError:
        log.logger.exception("request.internal_error")
    assert "Traceback (most recent call last)" in captured.getvalue()
