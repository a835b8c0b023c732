"""PicoDNS as a real process started through its command: serving, signals, bind errors."""

from __future__ import annotations

import asyncio
import json
import signal
import socket

import dns.asyncquery
import dns.message
import pytest

from tests.support.fake_upstream import FakeUpstream, answer
from tests.support.processes import PicoProcess, run_picodns
from tests.support.resolving import run


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_process_serves_then_exits_zero_on_signal(sig: int) -> None:
    async def main() -> None:
        async with FakeUpstream(answer(address="192.0.2.44")) as up:
            with PicoProcess("-upstreams", f"127.0.0.1:{up.port}") as pico:
                for transport in (dns.asyncquery.udp, dns.asyncquery.tcp):
                    query = dns.message.make_query("proc.example.", "A")
                    reply = await transport(query, "127.0.0.1", port=pico.port, timeout=5)
                    assert reply.answer[0][0].address == "192.0.2.44"
                assert len(up.received) == 1
                loop = asyncio.get_running_loop()
                assert await loop.run_in_executor(None, pico.stop, sig) == 0
                assert any("stopped" in line for line in pico.proc.stderr or [])

    run(main())


def test_listen_address_in_use_stops_startup_with_one_line_and_exit_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        out = run_picodns("-listen", f"127.0.0.1:{port}", "-upstreams", "127.0.0.1:5300")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("picodns: -listen")
    assert "in use" in lines[0]


def test_json_logs_and_query_log_lines() -> None:
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            args = ("-upstreams", f"127.0.0.1:{up.port}", "-log-format", "json", "-query-log")
            with PicoProcess(*args) as pico:
                for _ in range(2):
                    query = dns.message.make_query("Log.Example.", "AAAA")
                    await dns.asyncquery.udp(query, "127.0.0.1", port=pico.port, timeout=5)
                loop = asyncio.get_running_loop()
                assert await loop.run_in_executor(None, pico.stop, signal.SIGTERM) == 0
                lines = pico.lines + list(pico.proc.stderr or [])
        records = [json.loads(line) for line in lines if line.strip()]
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
        queries = [r["message"] for r in records if r["logger"] == "picodns.query"]
        assert len(queries) == 2
        assert "Log.Example. AAAA NOERROR resolved" in queries[0]
        assert "Log.Example. AAAA NOERROR cache" in queries[1]

    run(main())


def test_metrics_address_in_use_stops_startup_with_one_line_and_exit_1() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_picodns(
            "-listen", "127.0.0.1:0", "-upstreams", "127.0.0.1:5300",
            "-metrics-listen", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("picodns: -metrics-listen")
