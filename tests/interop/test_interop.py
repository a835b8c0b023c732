"""Interop: real dig and kdig query PicoDNS (a real process) in front of a real Knot DNS.

Skipped, with the reason shown, only when a binary is missing; CI installs them all.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import PicoProcess, knot, knotd_path

pytestmark = pytest.mark.skipif(
    knotd_path() is None, reason="knotd not installed (apt-get install knot)"
)


@pytest.fixture(scope="module")
def pico(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PicoProcess]:
    with knot(tmp_path_factory.mktemp("knot")) as knot_port:  # noqa: SIM117 (port needed)
        with PicoProcess("-upstreams", f"127.0.0.1:{knot_port}", "-timeout", "2s") as proc:
            yield proc
            assert proc.stop(signal.SIGTERM) == 0


def _run(tool: str, pico: PicoProcess, *args: str) -> str:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (apt-get install bind9-dnsutils knot-dnsutils)")
    out = subprocess.run(
        [tool, "@127.0.0.1", "-p", str(pico.port), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return out.stdout


@pytest.mark.parametrize("tool", ["dig", "kdig"])
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_a_and_aaaa_over_udp_and_tcp(pico: PicoProcess, tool: str, transport: str) -> None:
    assert _run(tool, pico, "www.example.test", "A", "+short", transport).split() == ["192.0.2.10"]
    assert _run(tool, pico, "www.example.test", "AAAA", "+short", transport).split() == [
        "2001:db8::10"
    ]


@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_cname_chain_mx_and_txt(pico: PicoProcess, tool: str) -> None:
    chain = _run(tool, pico, "alias.example.test", "A", "+short").split()
    assert chain == ["alias2.example.test.", "www.example.test.", "192.0.2.10"]
    assert _run(tool, pico, "example.test", "MX", "+short").split() == ["10", "mail.example.test."]
    assert "hello from the demo zone" in _run(tool, pico, "txt.example.test", "TXT", "+short")


@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_nxdomain_has_soa_and_status(pico: PicoProcess, tool: str) -> None:
    out = _run(tool, pico, "nope.example.test", "A")
    assert "NXDOMAIN" in out
    assert "SOA" in out and "hostmaster.example.test." in out


def _txt_bytes(short_output: str) -> int:
    return sum(len(part) for part in short_output.replace('"', " ").split())


@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_big_record_crosses_tc_to_tcp_on_both_sides(pico: PicoProcess, tool: str) -> None:
    # Knot truncates at our 1232-byte EDNS size, PicoDNS retries over TCP; a client with a
    # small buffer is told TC=1 by PicoDNS and retries over TCP itself.
    big = Path(__file__).resolve().parent.parent / "data" / "example.test.zone"
    expected = sum(
        len(s)
        for line in big.read_text().splitlines()
        if line.startswith("big")
        for s in line.split('"')[1::2]
    )
    assert expected == 3000
    full = _run(tool, pico, "big.example.test", "TXT", "+short", "+bufsize=4096")
    assert _txt_bytes(full) == expected
    small = _run(tool, pico, "big.example.test", "TXT", "+short", "+bufsize=512")
    assert _txt_bytes(small) == expected  # the client fell back to TCP


def test_dig_sees_cache_ttl_decrease_and_dnssec_ok_echo(pico: PicoProcess) -> None:
    first = _run("dig", pico, "short.example.test", "A", "+noall", "+answer", "+dnssec")
    ttl = int(first.split()[1])
    assert 0 < ttl <= 5
    out = _run("dig", pico, "short.example.test", "A", "+dnssec")
    assert "flags: do;" in out or "; EDNS: version: 0, flags: do;" in out
