"""docs/architecture.md lists every package and module under lmsd/ and names none that is
gone, and module docstrings name only files that exist: a move that forgets either fails.

How the tree in architecture.md names a file is in :func:`parse_tree`; how a docstring
may name one is in :func:`resolves`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"

#: A file or folder name as the doc and docstrings write it: ``pivot.py``, ``cache/``,
#: ``upstreams/cache/keeper.py``.
NAME = re.compile(r"^[A-Za-z_][\w/]*(?:\.py|/)$")
PY_IN_PROSE = re.compile(r"(?<![\w/.-])([A-Za-z_][\w/]*\.py)\b")
#: Where an entry line's names end and its description starts.
GAP = re.compile(r"\s{2,}")
#: Entry lines are indented less than this; description lines more.
ENTRY_INDENT = 8


@dataclass
class Tree:
    """What the tree block names, as paths from the repository root."""

    files: set[str] = field(default_factory=set)
    folders: set[str] = field(default_factory=set)

    def listed(self) -> set[str]:
        """Every path listed, with the folders a listed path passes through."""
        out = self.files | self.folders
        for path in list(out):
            parts = path.strip("/").split("/")
            out |= {"/".join(parts[:i]) + "/" for i in range(1, len(parts))}
        return out


def _tree_block(text: str) -> list[str]:
    blocks = re.findall(r"^```\n(.*?)^```", text, re.M | re.S)
    return next(b for b in blocks if b.startswith("lmsd/")).splitlines()


def parse_tree(lines: list[str]) -> Tree:
    """The paths the tree names, from the repository root.

    An entry line (indented under its package) starts with names: ``fronts/``,
    ``status.py sessions.py``, or a path from the entry above, ``admin/api.py``. After a
    gap of two spaces comes its description, which may name a package's modules in prose
    (``cache/   keep_warm, per upstream: keeper.py (...), turns.py (...)``), read relative
    to that package (or to the entry's parent when the entry is a module)."""
    tree = Tree()
    stack: list[tuple[int, str]] = []  # (indent, folder path ending in "/")
    prose_base = ""
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if not body:
            continue
        if indent < ENTRY_INDENT:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1] if stack else ""
            names_part, *rest = GAP.split(body, maxsplit=1)
            prose = rest[0] if rest else ""
            names = [n for n in names_part.split(" ") if NAME.match(n)]
            for name in names:
                (tree.folders if name.endswith("/") else tree.files).add(parent + name)
            alone = len(names) == 1 and names[0].endswith("/")
            if alone:
                stack.append((indent, parent + names[0]))
            prose_base = parent + names[0] if alone else parent
        else:
            prose = body
        tree.files |= {prose_base + n for n in PY_IN_PROSE.findall(prose)}
    return tree


def _modules() -> list[str]:
    """Every package (``lmsd/x/``) and module (``lmsd/x/y.py``) under lmsd/."""
    out = []
    for path in sorted((ROOT / "lmsd").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if "__pycache__" in rel:
            continue
        if path.name == "__init__.py":
            if path.parent != ROOT / "lmsd":
                out.append(rel.removesuffix("__init__.py"))
        else:
            out.append(rel)
    return out


def test_the_tree_parser_reads_entries_folders_and_prose() -> None:
    tree = parse_tree(
        [
            "lmsd/",
            "  a.py b.py          two modules",
            "  admin/api.py       a path from the entry above",
            "  upstreams/         a package",
            "    cache/           prose: keeper.py (the face),",
            "                         turns.py (each request)",
            "    router.py        routes",
            "  log.py             back at the top",
            "tests/             mirrors lmsd/",
            "  test_x.py        a test",
        ]
    )
    assert tree.files == {
        "lmsd/a.py",
        "lmsd/b.py",
        "lmsd/admin/api.py",
        "lmsd/upstreams/cache/keeper.py",
        "lmsd/upstreams/cache/turns.py",
        "lmsd/upstreams/router.py",
        "lmsd/log.py",
        "tests/test_x.py",
    }
    assert tree.folders == {"lmsd/", "lmsd/upstreams/", "lmsd/upstreams/cache/", "tests/"}
    assert "lmsd/admin/" in tree.listed()


TREE = parse_tree(_tree_block(ARCHITECTURE.read_text(encoding="utf-8")))


def test_every_package_and_module_is_in_the_architecture_tree() -> None:
    listed = TREE.listed()
    missing = [m for m in _modules() if m not in listed]
    assert missing == [], f"docs/architecture.md does not list: {missing}"


def test_the_architecture_tree_names_only_what_exists() -> None:
    assert "lmsd/protocol/pivot.py" in TREE.files
    gone = sorted(p for p in TREE.files | TREE.folders if not (ROOT / p).exists())
    assert gone == [], f"docs/architecture.md names what does not exist: {gone}"


def test_the_rest_of_the_architecture_page_names_only_modules_that_exist() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = "\n".join(_tree_block(text))
    rest = text.replace(block, "")
    modules = [p.relative_to(ROOT / "lmsd").as_posix() for p in (ROOT / "lmsd").rglob("*.py")]
    names = PY_IN_PROSE.findall(rest)
    assert "fronts/turn.py" in names, "the walk through the layout names modules"
    gone = [n for n in names if not any(m == n or m.endswith("/" + n) for m in modules)]
    assert gone == [], f"docs/architecture.md names modules that do not exist: {gone}"


# -- docstrings -----------------------------------------------------------------------

#: A file a docstring names: rooted (``lmsd/x.py``, ``tests/...``, ``bench/...``,
#: ``docs/x.md``), relative (``fronts/serve.py``) or bare (``keeper.py``).
FILE_IN_TEXT = re.compile(r"(?<![\w/.:-])((?:[A-Za-z_][\w-]*/)*[A-Za-z_][\w-]*\.(?:py|md))\b")
#: Names of files that are not lmsd's, said so in the text ("hypercorn's
#: ``protocol/events.py``"): a project's name and a possessive just before.
FOREIGN = re.compile(r"\b(?!lmsd)[\w.-]+(?:'s|s')\s+`{0,2}$")


def resolves(name: str, module: Path) -> bool:
    """Whether ``name``, written in ``module``'s docstring, is a file that exists.

    A path is read from the repository root or from a folder above the module
    (``fronts/serve.py`` written in ``lmsd/protocol/x.py`` is ``lmsd/fronts/serve.py``); a
    bare name from the module's package or a package above it, as a relative import reads
    (``stops.py`` in ``lmsd/protocol/chat/encode.py`` is ``lmsd/protocol/stops.py``); a
    bare ``.md`` from docs/. A test names the code it tests from the folder it mirrors
    (``anthropic/decode.py`` in ``tests/protocol/anthropic/`` is lmsd's)."""
    folders = [p for p in module.parents if ROOT in p.parents]
    rel = module.parent.relative_to(ROOT)
    if rel.parts[:1] == ("tests",):
        mirror = ROOT / "lmsd" / Path(*rel.parts[1:])
        folders += [mirror, *(p for p in mirror.parents if ROOT / "lmsd" in [p, *p.parents])]
    if "/" in name:
        bases = [ROOT, *folders]
    elif name.endswith(".md"):
        bases = [ROOT / "docs"]
    else:
        bases = folders
    return any((base / name).is_file() for base in bases)


def _python_files() -> list[Path]:
    return sorted(
        p
        for folder in ("lmsd", "tests", "bench")
        for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def test_a_name_resolves_from_the_module_or_above_and_a_test_from_what_it_mirrors() -> None:
    module = ROOT / "lmsd" / "protocol" / "chat" / "encode.py"
    assert resolves("decode.py", module)
    assert resolves("stops.py", module)  # lmsd/protocol/stops.py, a package above
    assert resolves("fronts/serve.py", module)
    assert resolves("lmsd/fronts/serve.py", module)
    assert resolves("docs/architecture.md", module)
    assert resolves("architecture.md", module)
    assert not resolves("serve.py", module)  # lmsd/fronts/serve.py: beside no package above
    assert not resolves("protocol/answer.py", module)
    test = ROOT / "tests" / "protocol" / "anthropic" / "test_decode.py"
    assert resolves("anthropic/decode.py", test)
    assert resolves("items.py", test)
    assert not resolves("front.py", test)  # lmsd/protocol/chat/front.py, not mirrored
    assert FOREIGN.search("as hypercorn's ``")
    assert not FOREIGN.search("as lmsd's ``")


def test_module_docstrings_name_only_files_that_exist() -> None:
    wrong = []
    for path in _python_files():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        for match in FILE_IN_TEXT.finditer(doc):
            if FOREIGN.search(doc[: match.start()]):
                continue
            if not resolves(match.group(1), path):
                wrong.append(f"{path.relative_to(ROOT)}: {match.group(1)}")
    assert wrong == [], "module docstrings name files that do not exist:\n" + "\n".join(wrong)
