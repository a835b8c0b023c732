"""Which build of picodns the suite runs against: compiled by mypyc (what `pip install` builds)
or the pure Python source (`make test-pure`, PICODNS_PURE=1)."""

from __future__ import annotations

import pytest

from picodns.cli import build_kind

COMPILED = build_kind() == "compiled"

# Fault injection that replaces a method on a live object. mypyc's classes are sealed (their
# methods are read-only), so these run only against the pure source; `make test` runs both.
patches_methods = pytest.mark.skipif(
    COMPILED, reason="replaces a method of a compiled class: runs in `make test-pure`"
)
