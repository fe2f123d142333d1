"""Only the assembly builds lmsd's parts: the daemon and ``lmsd replay`` get them from
``lmsd/daemon/assembly.py``, so their wiring cannot drift apart again. import-linter
keeps the two app factories for it (``pyproject.toml``); this keeps the constructors."""

from __future__ import annotations

import ast
from pathlib import Path

import lmsd
from lmsd.config import configured_upstreams, load_settings

LMSD = Path(lmsd.__file__).parent
ASSEMBLY = LMSD / "daemon" / "assembly.py"
#: What the daemon is built of. ``Watcher`` and ``CacheKeeper`` are a ``Backend``'s own.
PARTS = frozenset({
    "Upstream", "Backend", "Router", "SessionStore", "RecentRequests", "ResponseHistory",
    "Recorder", "Drain", "EventBus", "BusHandler", "Metrics", "LmsCli",
    "create_proxy_app", "create_admin_app"})
#: Built elsewhere on purpose: ``lmsd doctor`` asks the `lms` CLI itself.
ELSEWHERE = {(Path("ops/doctor/upstream.py"), "LmsCli")}


def built(path: Path) -> set[str]:
    """The parts ``path`` builds: calls to ``PARTS`` by name, less a memory-only default a
    part makes for itself when given none (``RecentRequests(None)``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else \
            func.attr if isinstance(func, ast.Attribute) else None
        memory_only = bool(node.args) and isinstance(node.args[0], ast.Constant) \
            and node.args[0].value is None
        if name in PARTS and not (memory_only and path != ASSEMBLY):
            found.add(name)
    return found


def test_only_the_assembly_builds_parts() -> None:
    elsewhere = {(path.relative_to(LMSD), part)
                 for path in LMSD.rglob("*.py") if path != ASSEMBLY
                 for part in built(path)}
    assert elsewhere == ELSEWHERE


def test_the_assembly_builds_every_part() -> None:
    """The scan sees the constructors it looks for (so the test above is not vacuous)."""
    assert built(ASSEMBLY) == PARTS


def test_started_models_alone_are_the_upstreams_unless_one_is_given(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('background_upstream = "small"\n[[models]]\nname = "small"\n'
                    'command = ["llama-server", "--port", "${PORT}"]\n')
    alone = load_settings({"config": str(path)}, {})
    assert configured_upstreams(alone) == []  # LM Studio is not looked for
    given = load_settings({"config": str(path), "upstream": "http://127.0.0.1:1234"}, {})
    assert [u.url for u in configured_upstreams(given)] == ["http://127.0.0.1:1234"]
    path.write_text('[[models]]\nname = "lmstudio-model"\nmemory = "1GiB"\n')
    assert len(configured_upstreams(load_settings({"config": str(path)}, {}))) == 1
