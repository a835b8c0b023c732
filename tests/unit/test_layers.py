"""ARCHITECTURE.md's one-way import rule, checked by walking every module's imports with `ast`.

A module imports only from layers beneath it (or its own); `cache` and `upstream` never import
each other; the sans-I/O core (`wire`, `message`, `cache`) imports no asyncio, socket, time,
logging or selectors. Every import statement counts, wherever it sits (inside a function, under
`if TYPE_CHECKING:`), and so do `importlib.import_module("...")` and `__import__("...")` calls
with a literal name. Modules that do not exist yet are simply not checked.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "picodns"
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "src" / PACKAGE

LAYERS = {
    "errors": 0,
    "metrics": 0,
    "wire": 1,
    "message": 2,
    "cache": 3,
    "upstream": 3,
    "resolver": 4,
    "pool": 5,
    "server": 5,
}
COMPOSITION_ROOT = 6  # config, cli, supervisor, metrics_http, and any module not listed above
EXEMPT = frozenset({"__init__", "__main__"})
NEVER_TOGETHER = frozenset({("cache", "upstream"), ("upstream", "cache")})
SANS_IO = frozenset({"wire", "message", "cache"})
IO_MODULES = frozenset({"asyncio", "socket", "time", "logging", "selectors"})


def layer(module: str) -> int:
    """The layer of a picodns module (by its name inside the package)."""
    return LAYERS.get(module, COMPOSITION_ROOT)


@dataclass(frozen=True)
class Import:
    line: int
    target: str
    """Full dotted name imported, e.g. "picodns.cache" or "asyncio.events"."""


def _dynamic_import(node: ast.Call) -> str | None:
    """The literal module name of `importlib.import_module("x")` or `__import__("x")`."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def imports_of(source: str, siblings: frozenset[str]) -> list[Import]:
    """Every module a source file imports, as absolute dotted names.

    `siblings` are the package's module names: ``from picodns import x`` (or ``from . import
    x``) imports the module x when x is one of them, else a name from the package itself.
    """
    out: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend(Import(node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                continue  # above the package: not a picodns module
            if node.level == 1:
                base = PACKAGE + ("." + node.module if node.module else "")
            else:
                base = node.module or ""
            if base == PACKAGE:
                for alias in node.names:
                    is_module = alias.name in siblings
                    target = f"{PACKAGE}.{alias.name}" if is_module else PACKAGE
                    out.append(Import(node.lineno, target))
            else:
                out.append(Import(node.lineno, base))
        elif isinstance(node, ast.Call):
            name = _dynamic_import(node)
            if name is not None:
                out.append(Import(node.lineno, name))
    return out


def violations(module: str, source: str, siblings: frozenset[str], filename: str) -> list[str]:
    """One line per import of `module` (given its source) that breaks the rules."""
    if module in EXEMPT:
        return []
    found = []
    own = layer(module)
    for imp in imports_of(source, siblings):
        where = f"{filename}:{imp.line}: {module} (layer {own}) imports {imp.target}"
        parts = imp.target.split(".")
        if parts[0] == PACKAGE and len(parts) > 1:
            other = parts[1]
            if other in EXEMPT:
                found.append(f"{where}: the package's entry points are not a layer")
            elif layer(other) > own:
                found.append(f"{where} (layer {layer(other)}): a lower layer imports a higher one")
            elif (module, other) in NEVER_TOGETHER:
                found.append(f"{where}: cache and upstream never import each other")
        elif module in SANS_IO and parts[0] in IO_MODULES:
            found.append(f"{where}: the DNS core and the cache are sans-I/O")
    return found


def package_modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PACKAGE_DIR.glob("*.py"))}


def _siblings() -> frozenset[str]:
    return frozenset(package_modules()) | frozenset(LAYERS)


def test_package_imports_flow_one_way() -> None:
    modules = package_modules()
    siblings = _siblings()
    found = []
    for module, path in modules.items():
        source = path.read_text(encoding="utf-8")
        found.extend(violations(module, source, siblings, f"src/{PACKAGE}/{path.name}"))
    assert not found, "imports against ARCHITECTURE.md's layering:\n" + "\n".join(found)


def test_the_walk_sees_the_modules_and_their_imports() -> None:
    # Guards against a check that passes because it looked at nothing.
    modules = package_modules()
    assert {"errors", "wire", "message", "cache"} <= set(modules), sorted(modules)
    cache_source = modules["cache"].read_text(encoding="utf-8")
    targets = {imp.target for imp in imports_of(cache_source, _siblings())}
    assert {"picodns.message", "picodns.wire"} <= targets, sorted(targets)


def test_checker_reports_each_offending_import() -> None:
    source = """
import asyncio
import time as clock
from socket import socket
import logging.handlers
from picodns.resolver import Resolver
from picodns import upstream, __version__
from . import server
from .errors import WireError
from .wire import read_message
import picodns.cli


def later():
    import selectors
    from picodns.pool import Pool
    return __import__("importlib").import_module("picodns.metrics_http")


if False:
    from picodns.supervisor import Supervisor
"""
    found = violations("cache", source, _siblings(), "synthetic.py")
    by_line = {int(message.split(":")[1]): message for message in found}
    # Every offending line is named once; the two allowed imports (lines 9 and 10) are not.
    assert len(found) == len(by_line), "\n".join(found)
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 11, 15, 16, 17, 21], "\n".join(found)
    assert by_line[6].startswith("synthetic.py:6: cache (layer 3) imports picodns.resolver (layer")
    assert "never import each other" in by_line[7]
    assert "sans-I/O" in by_line[2] and "sans-I/O" in by_line[15]
    assert "picodns.metrics_http" in by_line[17]


def test_checker_applies_the_layer_of_the_importing_module() -> None:
    siblings = _siblings()
    downward = "from picodns.cache import Cache\nfrom picodns.upstream import Upstream\n"
    assert violations("resolver", downward, siblings, "r.py") == []
    assert len(violations("message", downward, siblings, "m.py")) == 2
    assert len(violations("upstream", downward, siblings, "u.py")) == 1  # imports cache
    # The composition root may import anything, I/O included; a new module counts as root.
    root = "import asyncio\nfrom picodns import server, resolver, config\n"
    assert violations("cli", root, siblings, "c.py") == []
    assert violations("supervisor", root, siblings, "s.py") == []
    # Above the core, I/O is allowed; inside it, even a leaf may not reach up.
    assert violations("upstream", "import socket\nimport asyncio\n", siblings, "u.py") == []
    assert len(violations("errors", "from picodns import wire\n", siblings, "e.py")) == 1
    assert len(violations("wire", "from .message import Query\n", siblings, "w.py")) == 1
    assert violations("__init__", "from picodns.cli import main\n", siblings, "i.py") == []
