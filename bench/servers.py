"""The processes a benchmark run starts: Knot DNS as the upstream, and the three forwarders.

Rules this module keeps:
- Every server listens on 127.0.0.1 only, and every forwarder forwards only to the loopback
  Knot instance started here. Nothing reads /etc/resolv.conf or the system configs of
  dnsmasq or Unbound (dnsmasq gets `--conf-file=/dev/null`, Unbound a config of our own).
- Every process is started through :class:`Processes`, which stops each one by its PID
  (SIGTERM, then SIGKILL after a grace period), also when the run fails half-way.
- Nothing here measures; it only starts, checks readiness and stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

__all__ = [
    "FIXED_NAMES",
    "FORWARDERS",
    "PICO_FLAGS",
    "REQUIRED",
    "ZONE_ORIGIN",
    "Forwarder",
    "Processes",
    "Running",
    "find_binary",
    "free_port",
    "knot_config",
    "missing_binaries",
    "pico_supports",
    "unbound_config",
    "write_zone",
]

ZONE_ORIGIN = "bench.test."
LOOPBACK = "127.0.0.1"
STOP_GRACE = 10.0
READY_TIMEOUT = 15.0

# Binary -> Debian package, for the install hint when one is missing.
REQUIRED = {
    "dnsperf": "dnsperf",
    "knotd": "knot",
    "dnsmasq": "dnsmasq-base",
    "unbound": "unbound",
    "taskset": "util-linux",
    "chrt": "util-linux",
}

# The flags PicoDNS runs with in every measurement (listen/upstreams are added per run).
PICO_FLAGS = ("-cache-size", "200000", "-workers", "128", "-queue-size", "1024")

# Twenty fixed names answered from the cache in the hit workload: (name, type).
FIXED_NAMES: tuple[tuple[str, str], ...] = (
    *((f"host{i:02d}.{ZONE_ORIGIN}", "A") for i in range(1, 18)),
    (f"v6.{ZONE_ORIGIN}", "AAAA"),
    (ZONE_ORIGIN, "MX"),
    (f"big.{ZONE_ORIGIN}", "TXT"),
)


def find_binary(name: str) -> str | None:
    """The path of `name` on PATH or in /usr/sbin, or None."""
    found = shutil.which(name)
    if found:
        return found
    candidate = f"/usr/sbin/{name}"
    return candidate if os.access(candidate, os.X_OK) else None


def missing_binaries() -> list[str]:
    """The names in REQUIRED that are not installed."""
    return [name for name in REQUIRED if find_binary(name) is None]


def free_port() -> int:
    """A port that was free for UDP and TCP on 127.0.0.1 a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port on 127.0.0.1")


def write_zone(path: Path) -> None:
    """Write the benchmark zone: fixed names, a large TXT, a wildcard; all else is NXDOMAIN.

    TTLs and the SOA MINIMUM are an hour, so nothing expires from a cache during a run.
    """
    lines = [
        f"$ORIGIN {ZONE_ORIGIN}",
        "$TTL 3600",
        "@ 3600 IN SOA ns1 hostmaster 1 7200 900 1209600 3600",
        "@ IN NS ns1",
        "@ IN MX 10 mail",
        "ns1 IN A 127.0.0.1",
        "mail IN A 192.0.2.25",
        "v6 IN AAAA 2001:db8::6",
        *(f"host{i:02d} IN A 192.0.2.{i}" for i in range(1, 18)),
        # About 1 KB of TXT: fits the 1232-byte EDNS payload every forwarder uses.
        "big IN TXT " + " ".join(f'"{str(i % 10) * 200}"' for i in range(5)),
        "*.wild IN A 192.0.2.99",
    ]
    path.write_text("\n".join(lines) + "\n")


def pico_supports(flag: str) -> bool:
    """True when this PicoDNS build lists `flag` in its -h output."""
    pico = Path(sys.executable).with_name("picodns")
    out = subprocess.run([str(pico), "-h"], capture_output=True, text=True, timeout=30)
    return f"{flag} " in out.stdout


def _ask(port: int, name: str, rdtype: str) -> bool:
    query = dns.message.make_query(name, rdtype)
    try:
        reply = dns.query.udp(query, LOOPBACK, port=port, timeout=0.3)
    except (dns.exception.Timeout, OSError, dns.exception.DNSException):
        return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


@dataclass
class Running:
    """One started process: its PID, its command line and where its output goes."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Processes:
    """Starts processes and stops every one of them by its PID; use as a context manager."""

    workdir: Path
    started: list[Running] = field(default_factory=list)
    count: int = 0

    def start(self, name: str, argv: list[str]) -> Running:
        """Start `argv` in the work dir, stdout and stderr to a log file of its own."""
        self.count += 1
        log = self.workdir / f"{name}-{self.count}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        running = Running(name, argv, proc, log)
        self.started.append(running)
        return running

    def wait_ready(self, running: Running, port: int, name: str, rdtype: str) -> None:
        """Return once `running` answers `name`/`rdtype` on `port`; raise if it never does."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if running.proc.poll() is not None:
                break
            if _ask(port, name, rdtype):
                return
            time.sleep(0.05)
        self.stop(running)
        raise RuntimeError(f"{running.name} did not come up; its log:\n{running.log_text()}")

    def stop(self, running: Running) -> int | None:
        """Stop `running` by its PID: SIGTERM, SIGKILL after STOP_GRACE. Returns its status."""
        proc = running.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                print(
                    f"  {running.name} (pid {proc.pid}) ignored SIGTERM; killing", file=sys.stderr
                )
                proc.kill()
                proc.wait(STOP_GRACE)
        if running in self.started:
            self.started.remove(running)
        return proc.returncode

    def stop_all(self) -> None:
        for running in reversed(list(self.started)):
            self.stop(running)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def knot_config(workdir: Path, port: int, zone: Path) -> str:
    """A knotd config serving `zone` on 127.0.0.1:`port` with one UDP worker."""
    return f"""server:
    rundir: "{workdir}"
    listen: {LOOPBACK}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{workdir}/knot-db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "{workdir}"
    journal-content: none
    zonefile-sync: -1
    semantic-checks: off
zone:
  - domain: {ZONE_ORIGIN.rstrip(".")}
    file: "{zone}"
"""


def unbound_config(workdir: Path, port: int, upstream_port: int) -> str:
    """An Unbound config: one thread, 127.0.0.1 only, everything forwarded to the loopback Knot.

    No validation (iterator module only), no trust anchors, no remote control, no chroot, no
    syslog. The caches are sized so 100,000 names fit (the defaults of 4 MB each do not).
    """
    return f"""server:
    interface: {LOOPBACK}
    port: {port}
    do-ip6: no
    do-tcp: yes
    num-threads: 1
    do-daemonize: no
    use-syslog: no
    logfile: ""
    verbosity: 1
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    access-control: 127.0.0.0/8 allow
    # Unbound serves RFC 6761 names such as test. itself by default; forward them instead.
    local-zone: "test." nodefault
    msg-cache-size: 128m
    rrset-cache-size: 256m
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: {LOOPBACK}@{upstream_port}
"""


@dataclass(frozen=True)
class Forwarder:
    """How to run one forwarder on `port` in front of the upstream on `upstream_port`."""

    name: str
    label: str

    def argv(
        self,
        workdir: Path,
        port: int,
        upstream_port: int,
        pin: list[str],
        extra: tuple[str, ...] = (),
    ) -> list[str]:
        """The command line, pinned with `pin` (a taskset prefix), `extra` flags appended."""
        if self.name == "picodns":
            pico = Path(sys.executable).with_name("picodns")
            return [
                *pin,
                str(pico),
                "-listen",
                f"{LOOPBACK}:{port}",
                "-upstreams",
                f"{LOOPBACK}:{upstream_port}",
                *PICO_FLAGS,
                *extra,
            ]
        if self.name == "dnsmasq":
            return [
                *pin,
                str(find_binary("dnsmasq")),
                "--conf-file=/dev/null",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                f"--server={LOOPBACK}#{upstream_port}",
                f"--listen-address={LOOPBACK}",
                "--bind-interfaces",
                f"--port={port}",
                "--cache-size=10000",
                # dnsmasq caches only A, AAAA, CNAME and SRV unless told: the hit set has MX, TXT.
                "--cache-rr=TXT,MX",
                "--user=root",
                "--pid-file=",
                "--log-facility=-",
                *extra,
            ]
        if self.name == "unbound":
            conf = workdir / f"unbound-{port}.conf"
            conf.write_text(unbound_config(workdir, port, upstream_port))
            return [*pin, str(find_binary("unbound")), "-d", "-c", str(conf), *extra]
        raise ValueError(self.name)


FORWARDERS = (
    Forwarder("picodns", "PicoDNS"),
    Forwarder("dnsmasq", "dnsmasq"),
    Forwarder("unbound", "Unbound"),
)
