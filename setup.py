"""Build: the serving core compiled to C with mypyc, unless PICODNS_PURE=1.

mypyc compiles the same typed Python source (no second implementation): every test runs
against the compiled modules, and `make test-pure` runs them against the source as written.
If the compiler is missing or fails, set PICODNS_PURE=1 to install plain Python; behaviour is
the same, only slower (see BENCHMARKS.md).
"""

import os

from setuptools import setup

# The modules a query passes through. cli, config, supervisor and exposition run at startup or
# on a scrape, so they stay interpreted (and keep their monkeypatchable module attributes).
COMPILED = (
    "wire",
    "message",
    "cache",
    "errors",
    "metrics",
    "pool",
    "upstream",
    "resolver",
    "server",
)

ext_modules = []
if os.environ.get("PICODNS_PURE", "") != "1":
    from mypyc.build import mypycify

    ext_modules = mypycify([f"src/picodns/{name}.py" for name in COMPILED], opt_level="3")

setup(ext_modules=ext_modules)
