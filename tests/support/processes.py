"""Real processes for tests: PicoDNS via its command, and Knot DNS as an authoritative upstream."""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.message
import dns.query

ZONE = Path(__file__).resolve().parent.parent / "data" / "example.test.zone"
_LISTENING = re.compile(r"listening on (\S+):(\d+) ")


def free_port() -> int:
    """A port that was free for UDP and TCP on 127.0.0.1 a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def knotd_path() -> str | None:
    return shutil.which("knotd") or (
        "/usr/sbin/knotd" if os.access("/usr/sbin/knotd", os.X_OK) else None
    )


@contextmanager
def knot(tmp: Path, zone: Path = ZONE) -> Iterator[int]:
    """Run knotd serving `zone` on 127.0.0.1:<port>; yield the port; stop it by its PID."""
    binary = knotd_path()
    assert binary is not None
    port = free_port()
    (tmp / "db").mkdir(exist_ok=True)
    conf = tmp / "knot.conf"
    conf.write_text(
        f"""server:
    rundir: "{tmp}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{tmp}/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "{tmp}"
    journal-content: none
    zonefile-sync: -1
    semantic-checks: off
zone:
  - domain: example.test
    file: "{zone}"
"""
    )
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                q = dns.message.make_query("example.test.", "SOA")
                dns.query.udp(q, "127.0.0.1", port=port, timeout=0.2)
                break
            except (dns.exception.Timeout, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"knotd did not start: {err}") from None
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def run_picodns(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run `python -m picodns ARGS` to its end (a startup that must fail); its output as text."""
    command = [sys.executable, "-m", "picodns", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


class PicoProcess:
    """A `python -m picodns` child; its listening address is read from its startup line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "picodns", "-listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        # Raw reads from the pipe, split into lines here: select() on a buffered reader misses
        # lines that one read already pulled into the reader's buffer (several processes log
        # at once at startup), and would then wait for data that has already arrived.
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        pending = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    if self.proc.poll() is not None:
                        break
                    continue
                *complete, pending = (pending + chunk).split(b"\n")
                port = None
                for raw in complete:
                    line = raw.decode(errors="replace") + "\n"
                    self.lines.append(line)
                    match = _LISTENING.search(line)
                    if match and port is None:
                        port = int(match.group(2))
                if port is not None:
                    if pending:
                        self.lines.append(pending.decode(errors="replace"))
                    return port
            elif self.proc.poll() is not None:
                break
        self.proc.kill()
        raise RuntimeError("picodns did not start: " + "".join(self.lines))

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def __enter__(self) -> PicoProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
