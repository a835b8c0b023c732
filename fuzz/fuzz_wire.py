"""Coverage-guided fuzz target for the DNS core (picodns.wire and picodns.message).

Invariant: for any bytes, read_message, parse_query, scan_query, analyze_reply, and on what
analyze_reply accepts strip_opt, render_ttls and truncated_reply, and error_reply for every
rcode, each return a value or raise WireError: never another exception, never a hang. Where
two views accept the same bytes they agree (scan_query with parse_query, analyze_reply with
read_message), and every reply we synthesize is one we would accept ourselves. A violation is
an uncaught exception, which the fuzzer reports as a crash and saves as an input file.

Two engines run the same check:

- atheris (libFuzzer, coverage-guided), the default. Install it with
  `.venv/bin/pip install atheris==3.0.0` (the project's "fuzz" extra); on CPython 3.11/x86-64
  it installs from a prebuilt wheel, no compiler needed. libFuzzer's flags pass through:

      .venv/bin/python fuzz/fuzz_wire.py fuzz/corpus-work fuzz/corpus -max_total_time=180

  New inputs go to the first directory (fuzz/corpus-work/, not committed); crashes are saved
  under -artifact_prefix (default fuzz/corpus-work/). -timeout defaults to 5 s per input here.

- --no-atheris: a plain random-mutation loop over the corpus for machines without atheris. No
  coverage feedback; inputs some view accepts are kept as further seeds. Bounded by -runs=N
  and/or -seconds=S (-max_total_time=S is read the same way); -seed=N makes it repeatable;
  -timeout=S turns a slow input into a failure through SIGALRM:

      .venv/bin/python fuzz/fuzz_wire.py --no-atheris fuzz/corpus -seconds=60

The seed corpus (fuzz/corpus/) is written by fuzz/make_corpus.py.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import struct
import sys
import time
import traceback
from pathlib import Path
from types import FrameType

USE_ATHERIS = "--no-atheris" not in sys.argv
if USE_ATHERIS:
    import atheris

    with atheris.instrument_imports(include=["picodns"]):
        from contract import check
else:
    from contract import check

DEFAULT_ARTIFACTS = Path(__file__).parent / "corpus-work"


def test_one_input(data: bytes) -> None:
    check(data)


# ---------------------------------------------------------------------------------------------
# --no-atheris: random mutation without coverage feedback
# ---------------------------------------------------------------------------------------------


class Hang(Exception):
    """An input ran longer than -timeout."""


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Hang


def _mutate(rng: random.Random, buf: bytes, pool: list[bytes]) -> bytes:
    out = bytearray(buf)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[at % len(out)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del out[at:]
        elif op == 2:
            out[at:at] = bytes([rng.randrange(256)])
        elif op == 3:
            del out[at : at + rng.randint(1, 8)]
        elif op == 4 and len(out) >= 2:
            at = min(at, len(out) - 2)
            out[at : at + 2] = struct.pack("!H", rng.choice([0, 1, 2, 0xFFFF, rng.getrandbits(16)]))
        elif op == 5 and len(out) >= 12:
            # A count field (QD/AN/NS/AR): the most productive place to lie.
            field = 4 + 2 * rng.randrange(4)
            out[field : field + 2] = struct.pack("!H", rng.choice([0, 1, 2, 3, 0xFFFF]))
        elif op == 6 and len(out) > 12:
            # A compression pointer anywhere, aimed anywhere.
            target = rng.randrange(len(out))
            out[at:at] = bytes([0xC0 | target >> 8, target & 0xFF])
        elif op == 7 and out:
            start = rng.randrange(len(out))
            out[at:at] = out[start : start + rng.randint(1, 16)]
        elif op == 8:
            other = rng.choice(pool)
            split = rng.randrange(len(other) + 1)
            out = out[:at] + other[split:]
    return bytes(out)


def _flag(args: list[str], name: str) -> str | None:
    for arg in args:
        if arg.startswith(f"-{name}="):
            return arg.split("=", 1)[1]
    return None


def _save_crash(data: bytes, prefix: str) -> str:
    path = f"{prefix}crash-{hashlib.sha1(data).hexdigest()}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
    return path


def _load_corpus(dirs: list[str]) -> list[bytes]:
    seeds = []
    for d in dirs:
        for path in sorted(Path(d).glob("*")):
            if path.is_file():
                seeds.append(path.read_bytes())
    return seeds or [b"\x00" * 12]


def mutation_loop(args: list[str]) -> int:
    runs = int(_flag(args, "runs") or 0)
    seconds = float(_flag(args, "seconds") or _flag(args, "max_total_time") or 0)
    if not runs and not seconds:
        seconds = 60.0
    timeout = float(_flag(args, "timeout") or 5)
    rng = random.Random(int(_flag(args, "seed") or time.time_ns()))
    prefix = _flag(args, "artifact_prefix") or f"{DEFAULT_ARTIFACTS}{os.sep}"
    dirs = [a for a in args[1:] if not a.startswith("-")]
    pool = _load_corpus(dirs)
    seeds = len(pool)
    signal.signal(signal.SIGALRM, _on_alarm)
    start = time.monotonic()
    execs = 0
    for data in list(pool):
        check(data)  # the seeds themselves must pass
    while (not runs or execs < runs) and (not seconds or time.monotonic() - start < seconds):
        data = _mutate(rng, rng.choice(pool), pool)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            accepted = check(data)
        except BaseException as exc:  # a finding: save it, say what it was, stop like libFuzzer
            signal.setitimer(signal.ITIMER_REAL, 0)
            if isinstance(exc, KeyboardInterrupt):
                break
            path = _save_crash(data, prefix)
            traceback.print_exc()
            kind = "timeout" if isinstance(exc, Hang) else "crash"
            print(f"==ERROR== {kind} after {execs} execs; input saved to {path}: {data.hex()}")
            return 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        execs += 1
        if accepted and len(pool) < 20000 and len(data) <= 4096:
            pool.append(data)
    elapsed = time.monotonic() - start
    print(
        f"#{execs} DONE (no atheris): {execs} execs in {elapsed:.1f}s "
        f"({execs / max(elapsed, 1e-9):.0f} exec/s), {seeds} seeds, pool {len(pool)}, no findings"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    if not USE_ATHERIS:
        return mutation_loop([a for a in args if a != "--no-atheris"])
    if not any(a.startswith("-timeout=") for a in args):
        args.append("-timeout=5")
    if not any(a.startswith("-artifact_prefix=") for a in args):
        args.append(f"-artifact_prefix={DEFAULT_ARTIFACTS}{os.sep}")
    DEFAULT_ARTIFACTS.mkdir(exist_ok=True)
    for d in args[1:]:
        if not d.startswith("-"):
            Path(d).mkdir(parents=True, exist_ok=True)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
