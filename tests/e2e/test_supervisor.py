"""``-processes N`` as real processes: a supervisor started through the command, its children
found through /proc and their own startup lines, the fake upstream in the test's event loop.

Every process a test starts is stopped by its PID: the supervisor by PicoProcess, and any child
still alive afterwards by :class:`Supervised` (children also stop by themselves once their
supervisor is gone, which one test checks).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest

from picodns.cli import CHILD_FLAG
from tests.support.fake_upstream import FakeUpstream, answer
from tests.support.processes import PicoProcess, run_picodns
from tests.support.resolving import run
from tests.support.scraping import http_get, scrape, value

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists() or not hasattr(socket, "SO_REUSEPORT"),
    reason="needs Linux /proc and SO_REUSEPORT",
)

CHILD_LINE = re.compile(r"\[pid (\d+)\] picodns \S+ child serving on .* metrics=(\S+):(\d+)$")
METRICS_AT = re.compile(r"metrics=(\S+):(\d+)$")
WAIT = 30.0  # generous bound for anything that involves starting an interpreter


def children_of(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is `pid`, from /proc/*/stat."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def gone(pid: int) -> bool:
    """True when `pid` no longer runs (it is reaped, or a zombie nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def is_picodns_child(pid: int) -> bool:
    try:
        return CHILD_FLAG.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Supervised(PicoProcess):
    """``python -m picodns -processes N ...``; remembers every child it sees, to stop them."""

    def __init__(self, processes: int, *args: str) -> None:
        super().__init__("-processes", str(processes), *args)
        self.seen: set[int] = set()
        self.children()

    def children(self) -> set[int]:
        pids = children_of(self.proc.pid)
        self.seen |= pids
        return pids

    @property
    def metrics(self) -> tuple[str, int]:
        match = METRICS_AT.search(self.lines[-1])
        assert match, self.lines[-1]
        return match.group(1), int(match.group(2))

    def child_lines(self) -> dict[int, tuple[str, int]]:
        """{child PID: its own metrics address}, from the children's startup lines."""
        found = {}
        for line in self.lines:
            match = CHILD_LINE.search(line.strip())
            if match:
                found[int(match.group(1))] = (match.group(2), int(match.group(3)))
        return found

    def __enter__(self) -> Supervised:
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        for pid in self.seen:
            if not gone(pid) and is_picodns_child(pid):
                os.kill(pid, signal.SIGKILL)


async def ask_many(port: int, names: list[str], address: str = "192.0.2.9") -> None:
    """Ask each name over UDP, each from a socket of its own (a new source port), 20 at once;
    every one must be answered with `address`."""

    async def one(name: str) -> None:
        query = dns.message.make_query(name, "A")
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)
        assert reply.answer[0][0].address == address

    for start in range(0, len(names), 20):
        await asyncio.gather(*(one(name) for name in names[start : start + 20]))


async def stop(pico: PicoProcess, sig: int) -> int:
    return await asyncio.get_running_loop().run_in_executor(None, pico.stop, sig)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll the async `check` until it returns true, for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def test_two_processes_answer_udp_and_tcp_and_metrics_are_summed_across_them() -> None:
    async def main() -> None:
        async with FakeUpstream(answer(address="192.0.2.9")) as up:
            args = ("-upstreams", f"127.0.0.1:{up.port}", "-metrics-listen", "127.0.0.1:0")
            with Supervised(2, *args) as pico:
                # The supervisor's line came last, after both children said they serve.
                assert "listening on" in pico.lines[-1] and "processes=2" in pico.lines[-1]
                assert sum("listening on" in line for line in pico.lines) == 1
                own = pico.child_lines()
                assert set(own) == pico.children() and len(own) == 2

                for transport in (dns.asyncquery.udp, dns.asyncquery.tcp):
                    query = dns.message.make_query(f"{transport.__name__}.example.", "A")
                    reply = await transport(query, "127.0.0.1", port=pico.port, timeout=5)
                    assert reply.answer[0][0].address == "192.0.2.9"
                sent = 200
                await ask_many(pico.port, [f"n{i}.spread.example." for i in range(sent)])
                assert len(up.received) == sent + 2  # every name distinct: every one a miss

                m = await scrape(pico.metrics)
                assert value(m, "picodns_processes") == 2
                assert value(m, "picodns_process_restarts_total") == 0
                assert value(m, "picodns_queries_total", transport="udp") == sent + 1
                assert value(m, "picodns_queries_total", transport="tcp") == 1
                assert value(m, "picodns_responses_total", rcode="NOERROR") == sent + 2
                assert value(m, "picodns_cache_entries") == sent + 2
                upstream = f"127.0.0.1:{up.port}"
                forwarded = value(
                    m, "picodns_upstream_queries_total", upstream=upstream, transport="udp"
                )
                assert forwarded == sent + 2
                # Each child counted its own share, and both got some.
                per_child = [await scrape(address) for address in own.values()]
                udp = [value(c, "picodns_queries_total", transport="udp") for c in per_child]
                assert all(n > 0 for n in udp) and sum(udp) == sent + 1, udp
                starts = [value(c, "picodns_start_time_seconds") for c in per_child]
                assert value(m, "picodns_start_time_seconds") == min(starts)
                info = [k for k in m if k[0] == "picodns_build_info"]
                assert len(info) == 1 and m[info[0]] == 1

                assert await http_get(pico.metrics, "/health") == (200, "ok\n")
                assert (await http_get(pico.metrics, "/ready"))[0] == 200
                assert (await http_get(pico.metrics, "/nope"))[0] == 404
                children = pico.children()
                assert await stop(pico, signal.SIGTERM) == 0
                assert all(gone(pid) for pid in children)

    run(main())


def test_a_child_killed_with_sigkill_is_restarted_and_service_continues() -> None:
    async def main() -> None:
        async with FakeUpstream(answer(address="192.0.2.9")) as up:
            args = ("-upstreams", f"127.0.0.1:{up.port}", "-metrics-listen", "127.0.0.1:0")
            with Supervised(2, *args) as pico:
                before = pico.children()
                assert len(before) == 2
                victim = min(before)
                os.kill(victim, signal.SIGKILL)

                async def replaced() -> bool:
                    now = pico.children()
                    if len(now) != 2 or victim in now:
                        return False
                    m = await scrape(pico.metrics)
                    return value(m, "picodns_processes") == 2

                await eventually(replaced, "a new child in place of the killed one")
                after = pico.children()
                assert after - before and before - after == {victim} and gone(victim)
                m = await scrape(pico.metrics)
                assert value(m, "picodns_process_restarts_total") == 1

                await ask_many(pico.port, [f"r{i}.example." for i in range(40)])
                query = dns.message.make_query("tcp-after.example.", "A")
                reply = await dns.asyncquery.tcp(query, "127.0.0.1", port=pico.port, timeout=5)
                assert reply.answer[0][0].address == "192.0.2.9"
                m = await scrape(pico.metrics)
                # The killed child's counts went with it; the new one's started from zero.
                assert value(m, "picodns_queries_total", transport="udp") >= 40

                assert await stop(pico, signal.SIGTERM) == 0
                assert all(gone(pid) for pid in after)
                rest = list(pico.proc.stderr or [])
            restarts = [line for line in rest if "restarting it in" in line]
            assert len(restarts) == 1, rest
            assert f"(pid {victim}) was killed by SIGKILL; restarting it in 0.5s" in restarts[0]

    run(main())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_supervisor_stops_every_child_and_exits_zero(sig: int) -> None:
    async def main() -> None:
        async with FakeUpstream(answer(address="192.0.2.9")) as up:
            with Supervised(3, "-upstreams", f"127.0.0.1:{up.port}") as pico:
                children = pico.children()
                assert len(children) == 3
                await ask_many(pico.port, [f"s{i}.example." for i in range(10)])
                assert await stop(pico, sig) == 0
                assert all(gone(pid) for pid in children)
                rest = list(pico.proc.stderr or [])
        assert sum("picodns stopped" in line for line in rest) == 4  # 3 children + supervisor
        assert not any("restarting" in line or "Traceback" in line for line in rest), rest

    run(main())


def test_children_stop_by_themselves_when_the_supervisor_is_killed() -> None:
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            with Supervised(2, "-upstreams", f"127.0.0.1:{up.port}") as pico:
                children = pico.children()
                assert len(children) == 2
                pico.proc.kill()
                pico.proc.wait(10)

                async def all_gone() -> bool:
                    return all(gone(pid) for pid in children)

                await eventually(all_gone, "the orphaned children to exit")

    run(main())


def test_one_process_is_served_without_a_supervisor() -> None:
    async def main() -> None:
        async with FakeUpstream(answer(address="192.0.2.9")) as up:
            with PicoProcess("-processes", "1", "-upstreams", f"127.0.0.1:{up.port}") as pico:
                assert children_of(pico.proc.pid) == set()
                await ask_many(pico.port, ["one.example."])
                assert await stop(pico, signal.SIGTERM) == 0

    run(main())


def picodns(*args: str) -> subprocess.CompletedProcess[str]:
    return run_picodns(*args, "-upstreams", "127.0.0.1:5300", timeout=WAIT)


def test_a_listen_address_in_use_stops_the_supervisor_with_one_line_and_exit_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        out = picodns("-processes", "2", "-listen", f"127.0.0.1:{port}")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"picodns: -listen 127.0.0.1:{port}: ")
    assert "in use" in lines[0]


def test_a_metrics_address_in_use_stops_the_supervisor_with_one_line_and_exit_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        where = f"127.0.0.1:{port}"
        out = picodns("-processes", "2", "-listen", "127.0.0.1:0", "-metrics-listen", where)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines == [f"picodns: -metrics-listen {where}: cannot bind: Address already in use"]


def test_the_hidden_child_word_with_a_bad_config_is_one_line_and_exit_2() -> None:
    out = run_picodns(CHILD_FLAG, "{not json", timeout=WAIT)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"picodns: {CHILD_FLAG}: ")
