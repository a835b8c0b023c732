"""The build under test: the suite must run against the build it was asked to (compiled or
pure), and a compiled module must not be older than its source (or the tests would check
yesterday's code)."""

from __future__ import annotations

import ast
import importlib
import os
import sys
from pathlib import Path

import pytest

from picodns.cli import build_kind


def _compiled_by_setup() -> tuple[str, ...]:
    """setup.py's COMPILED: the modules mypyc compiles."""
    tree = ast.parse((Path(__file__).parents[2] / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no COMPILED")


CORE = _compiled_by_setup()


def test_the_suite_runs_against_the_build_it_was_asked_to() -> None:
    expected = os.environ.get("PICODNS_EXPECT_BUILD")
    if expected is None:
        pytest.skip("PICODNS_EXPECT_BUILD not set (make test and make test-pure set it)")
    assert build_kind() == expected


def test_every_core_module_comes_from_the_same_build() -> None:
    files = {name: importlib.import_module(f"picodns.{name}").__file__ or "" for name in CORE}
    pure = {name for name, path in files.items() if path.endswith(".py")}
    assert pure == (set(CORE) if build_kind() == "pure" else set()), files


def test_compiled_modules_are_not_older_than_their_source() -> None:
    if build_kind() == "pure":
        pytest.skip("pure build: nothing compiled")
    # The code of every compiled module is in one shared library, which each module's own
    # small extension imports: that library must be newer than every source it came from.
    (library,) = [m for name, m in sys.modules.items() if name.endswith("__mypyc")]
    built = Path(library.__file__ or "").stat().st_mtime
    for name in CORE:
        compiled = Path(importlib.import_module(f"picodns.{name}").__file__ or "")
        source = compiled.parent / f"{name}.py"
        assert built >= source.stat().st_mtime, (
            f"{source.name} changed after it was compiled: run `make build` to recompile"
        )
