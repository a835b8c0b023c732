"""Side-by-side benchmark: PicoDNS, dnsmasq and Unbound in front of the same loopback Knot DNS.

Run with `make bench` (about 9 minutes) or `BENCH_QUICK=1 make bench` (about 2 minutes).
Writes the results between the markers in BENCHMARKS.md and prints them.

What it does, in order (BENCHMARKS.md explains the why):
1. Starts knotd on 127.0.0.1 serving a zone written for the run (fixed names, a ~1 KB TXT, a
   wildcard so unique names are cache misses; any other name is NXDOMAIN).
2. For each workload (hit, miss, nxdomain), N rounds of the three forwarders, interleaved (the
   order rotates each round): a fresh forwarder pinned to CPU 0; dnsperf (pinned to CPU 1 with
   knotd) at full speed for QPS and CPU seconds; then dnsperf at fixed rates with `-v` for
   per-query latency percentiles.
3. Memory: a fresh forwarder per kind is sent 100,000 distinct names; VmRSS before and after.
4. Scaling: PicoDNS with `-processes 1` and `-processes 2`, nothing pinned (dnsperf neither),
   interleaved rounds of the hit workload at full speed.

Safety rules kept here and in servers.py: every server binds 127.0.0.1 only; every forwarder
forwards only to the loopback knotd started here; every load run is bounded by dnsperf's `-l`
(and `-n`) plus a subprocess timeout; every process started is stopped by its PID in a
`finally`, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import random
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # the bench directory is not a package
from servers import (
    FIXED_NAMES,
    FORWARDERS,
    REQUIRED,
    ZONE_ORIGIN,
    Forwarder,
    Processes,
    Running,
    find_binary,
    free_port,
    knot_config,
    missing_binaries,
    pico_supports,
    write_zone,
)

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

WORKLOADS = ("hit", "miss", "nxdomain")
EXPECTED_RCODE = report.EXPECTED
MEMORY_NAMES = 100_000
# Fixed offered loads for latency. 5,000 QPS is issue 6's figure; misses also get 1,000 QPS,
# which stays below every server's miss capacity on a slow machine.
LATENCY_RATES = {"hit": (5000,), "miss": (1000, 5000), "nxdomain": (1000, 5000)}
# Outstanding queries at full speed: below dnsmasq's default limit of 150 concurrent forwards
# (beyond it dnsmasq answers REFUSED) and small enough not to overflow socket buffers.
SATURATION_ARGS = ("-T", "1", "-c", "4", "-q", "100", "-t", "2")
RETRIES_EACH = 2  # most times one disturbed measurement is redone (other jobs may run for long)
RT_PRIORITY = 10  # SCHED_RR priority of every process in a fixed-rate run (with --rt)
RT_LOAD_LIMIT = 0.8  # ... unless it offers more than this share of the server's full-speed QPS
LATENCY_ARGS = ("-T", "1", "-c", "4", "-q", "100", "-t", "2", "-v")
# The scaling runs: two dnsperf threads and 20 client sockets, so that SO_REUSEPORT's hash of
# the source address spreads the queries over both serving processes.
SCALING_ARGS = ("-T", "2", "-c", "20", "-q", "200", "-t", "2")
SCALING_PROCESSES = (1, 2)


@dataclass(frozen=True)
class Plan:
    """How long and how often to measure."""

    rounds: int
    seconds: float  # each full-speed dnsperf run
    latency_seconds: float  # each fixed-rate run
    unique_names: int  # size of the miss and NXDOMAIN query files
    quiet_wait: float  # most seconds to wait for other jobs on the machine, per measurement
    quiet_budget: float  # most seconds to wait for them in the whole run
    retries: int  # most measurements redone in the whole run because other jobs disturbed them


FULL = Plan(3, 5, 3, unique_names=400_000, quiet_wait=8, quiet_budget=90, retries=6)
QUICK = Plan(1, 2, 2, unique_names=200_000, quiet_wait=3, quiet_budget=10, retries=1)


# --- /proc readers ------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (PicoDNS may run child processes)."""
    found = [pid]
    for current in found:
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{current}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            found.extend(int(c) for c in children if int(c) not in found)
    return found


def cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` (all its threads) and of its living descendants, in seconds."""
    total = 0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return total / CLK_TCK


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its descendants, in KiB."""
    total = 0
    for p in _descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+)", status, re.MULTILINE)
        total += int(match.group(1)) if match else 0
    return total


def _busy_ticks(cpu: str = "cpu") -> int:
    """Ticks spent running tasks on one CPU ("cpu0") or all ("cpu"), from /proc/stat.

    IRQ and softirq time are left out: they are mostly the kernel moving our own packets, and
    are accounted to no process (so no server's CPU seconds include them either).
    """
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name == cpu:
            user, nice, system = (int(v) for v in values[:3])
            return user + nice + system
    return 0


def _idle_ticks() -> int:
    """Ticks every CPU spent idle (idle + iowait), from /proc/stat."""
    values = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return int(values[3]) + int(values[4])


def _udp_drops() -> int:
    """Datagrams the kernel dropped for full buffers, machine-wide (/proc/net/snmp)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    header, values = [r for r in rows if r and r[0] == "Udp:"][:2]
    return sum(int(values[header.index(k)]) for k in ("RcvbufErrors", "SndbufErrors"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_PF_KTHREAD = 0x00200000


def _kernel_threads_cpu() -> float:
    """utime+stime of all kernel threads (socket teardown, RCU, workqueues), in seconds."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[6]) & _PF_KTHREAD:  # field 9 of stat: flags
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


@dataclass
class Snapshot:
    """Counters read just before and just after a load run."""

    forwarder: float
    knot: float
    dnsperf: float  # CPU of reaped children: only dnsperf is reaped in between
    own: float  # this script
    kernel: float  # kernel threads
    machine: float  # every task on every CPU
    udp_drops: int

    @classmethod
    def take(cls, forwarder_pid: int, knot_pid: int) -> Snapshot:
        return cls(
            cpu_seconds(forwarder_pid),
            cpu_seconds(knot_pid),
            _children_cpu(),
            _own_cpu(),
            _kernel_threads_cpu(),
            _busy_ticks() / CLK_TCK,
            _udp_drops(),
        )

    def other_jobs(self, before: Snapshot) -> float:
        """CPU seconds since `before` of every user-space task that is not part of the run."""
        ours = (
            self.forwarder
            - before.forwarder
            + self.knot
            - before.knot
            + self.dnsperf
            - before.dnsperf
            + self.own
            - before.own
        )
        return max(0.0, self.machine - before.machine - ours - (self.kernel - before.kernel))


def set_realtime(pids: list[int], on: bool) -> None:
    """Switch every thread of `pids` to SCHED_RR (`on`) or back to SCHED_OTHER."""
    policy = ["-r", str(RT_PRIORITY)] if on else ["-o", "0"]
    for pid in pids:
        subprocess.run(["chrt", "-a", "-p", *policy, str(pid)], capture_output=True, check=on)


def settle(pid: int, limit: float = 5.0) -> None:
    """Wait (at most `limit` s) until `pid` is idle: it has finished any backlog of queries."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.2)
        if cpu_seconds(pid) - before < 0.01:
            return


def machine_busy(seconds: float = 0.25) -> float:
    """CPUs' worth of work done on the machine over the next `seconds` (0 = idle)."""
    before = _busy_ticks()
    time.sleep(seconds)
    return (_busy_ticks() - before) / CLK_TCK / seconds


# --- dnsperf ------------------------------------------------------------------------------------


@dataclass
class Perf:
    """What one dnsperf run reported."""

    argv: list[str]
    sent: int = 0
    completed: int = 0
    lost: int = 0
    qps: float = 0.0
    run_time: float = 0.0
    avg_latency: float = 0.0
    rcodes: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds; only with -v


_NUMBER = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "run_time": r"Run time \(s\):\s+([\d.]+)",
    "avg_latency": r"Average Latency \(s\):\s+([\d.]+)",
}


def parse_dnsperf(argv: list[str], output: str) -> Perf:
    """Parse dnsperf 2.x's report (and, with -v, its per-query lines) into a Perf."""
    perf = Perf(argv)
    for key, pattern in _NUMBER.items():
        match = re.search(pattern, output)
        if match is None:
            raise RuntimeError(f"dnsperf output has no {key!r}:\n{output[-3000:]}")
        value = match.group(1)
        setattr(perf, key, float(value) if "." in value else int(value))
    codes = re.search(r"Response codes:\s+(.*)", output)
    if codes:
        for name, count in re.findall(r"([A-Z]+) (\d+) \(", codes.group(1)):
            perf.rcodes[name] = int(count)
    for line in output.splitlines():
        if line.startswith("> "):  # "> NOERROR host01.bench.test A 0.000123"
            with contextlib.suppress(ValueError):  # a timed-out query has no latency
                perf.latencies.append(float(line.rsplit(None, 1)[1]))
    return perf


def dnsperf(pin: list[str], port: int, datafile: Path, args: list[str], limit: float) -> Perf:
    """Run dnsperf (EDNS0 on) against 127.0.0.1:`port`; raise on a failed run.

    `limit` is the run's own `-l`; the subprocess gets 30 s more before it is killed. Output
    goes to a file, not a pipe: with `-v` it is large, and a real-time dnsperf must never wait
    for this (ordinary-priority) script to drain a pipe.
    """
    argv = [*pin, str(find_binary("dnsperf")), "-s", "127.0.0.1", "-p", str(port)]
    argv += ["-d", str(datafile), "-e", *args]
    with tempfile.TemporaryFile("w+") as out:
        status = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, timeout=limit + 30
        ).returncode
        out.seek(0)
        output = out.read()
    if status != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{output[-3000:]}")
    return parse_dnsperf(argv, output)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * len(ordered) * 1000) // 1000))  # ceil, robust to float noise
    return ordered[min(rank, len(ordered)) - 1]


# --- the benchmark ------------------------------------------------------------------------------


@dataclass
class Latency:
    """One fixed-rate run: offered `rate`, what came back, and the server's CPU meanwhile."""

    rate: int
    sent: int
    completed: int
    lost: int
    qps: float
    run_time: float
    cpu: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    rcodes: dict[str, int]
    rt: bool  # ran SCHED_RR
    near_capacity: bool  # offered more than RT_LOAD_LIMIT of the full-speed QPS

    @property
    def busy(self) -> float:
        return self.cpu / self.run_time if self.run_time > 0 else 0.0


@dataclass
class Measurement:
    """One forwarder, one workload, one round: a full-speed run and its fixed-rate runs."""

    server: str
    workload: str
    round: int
    qps: float
    sent: int
    completed: int
    lost: int
    run_time: float
    cpu: float
    knot_cpu: float
    dnsperf_cpu: float
    other_jobs: float  # CPU-s of user-space tasks not ours during the full-speed run
    kernel_threads: float  # CPU-s of kernel threads then (much of it our sockets' churn)
    udp_drops: int
    rcodes: dict[str, int]
    latency: list[Latency]
    waited: float
    log_lines: list[str]
    metrics: dict[str, float]

    @property
    def per_cpu(self) -> float:
        return self.completed / self.cpu if self.cpu > 0 else 0.0

    @property
    def busy(self) -> float:
        return self.cpu / self.run_time if self.run_time > 0 else 0.0

    @property
    def disturbed(self) -> bool:
        """Other jobs took over an eighth of the two CPUs during the full-speed run."""
        limit = self.run_time
        return self.other_jobs > 0.25 * limit

    def at(self, rate: int) -> Latency | None:
        return next((lat for lat in self.latency if lat.rate == rate), None)

    @property
    def wrong_rcodes(self) -> int:
        want = EXPECTED_RCODE[self.workload]
        counts = [self.rcodes, *(lat.rcodes for lat in self.latency)]
        return sum(n for c in counts for code, n in c.items() if code != want)


@dataclass
class MemoryResult:
    """RSS of one fresh forwarder before and after it was sent MEMORY_NAMES distinct names."""

    server: str
    rss_start_kib: int
    rss_after_kib: int
    completed: int
    lost: int
    seconds: float
    cached_sample: int
    sample_size: int
    udp_drops: int
    log_lines: list[str]
    metrics: dict[str, float]


@dataclass
class ScalingResult:
    """PicoDNS with `processes` serving processes, unpinned: one full-speed hit run."""

    processes: int
    round: int
    qps: float
    completed: int
    lost: int
    run_time: float
    cpu: float  # the supervisor and every serving process
    dnsperf_cpu: float
    idle: float  # share of all CPUs' time left idle during the run (0..1)
    other_jobs: float
    log_lines: list[str]

    @property
    def per_cpu(self) -> float:
        return self.completed / self.cpu if self.cpu > 0 else 0.0


class Bench:
    """Everything one run needs: the temp dir, the processes, the knotd upstream, the plan."""

    def __init__(
        self, plan: Plan, workdir: Path, procs: Processes, nice: int = 0, rt: bool = False
    ) -> None:
        self.plan = plan
        self.rt = rt
        if nice:
            # Inherited by every process started from here: knotd, the forwarders, dnsperf.
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        self.workdir = workdir
        self.procs = procs
        cores = sorted(os.sched_getaffinity(0))
        self.core_ids = (cores[0], cores[-1])
        # "Not pinned": every CPU this script had at the start. Children inherit the script's own
        # affinity (CPU 1 below), so unpinned processes must be given all CPUs explicitly.
        self.any_cpu = ["taskset", "-c", ",".join(map(str, cores))]
        self.cpus = len(cores)
        if len(cores) >= 2:
            self.server_pin = ["taskset", "-c", str(cores[0])]
            self.load_pin = ["taskset", "-c", str(cores[1])]
            # This script mostly sleeps; it stays off the forwarder's CPU all the same.
            os.sched_setaffinity(0, {cores[1]})
        else:
            print(
                "bench: one CPU only: nothing is pinned; the numbers mean little", file=sys.stderr
            )
            self.server_pin, self.load_pin = [], []
        self.knot_port = 0
        self.knot: Running | None = None
        self.commands: dict[str, str] = {}
        self.pico_banner = ""
        self.pico_metrics = pico_supports("-metrics-listen")
        self.quiet_left = plan.quiet_budget

    # files

    def write_inputs(self) -> None:
        """The zone, and one query file per workload and per fixed rate (unique names each)."""
        write_zone(self.workdir / "bench.test.zone")
        (self.workdir / "knot-db").mkdir()
        lines = [f"{name} {rdtype}" for name, rdtype in FIXED_NAMES]
        (self.workdir / "hit.txt").write_text("\n".join(lines) + "\n")
        files = [
            ("miss", "m{}.wild." + ZONE_ORIGIN, self.plan.unique_names),
            ("nxdomain", "nx-{}." + ZONE_ORIGIN, self.plan.unique_names),
            ("memory", "mem{}.wild." + ZONE_ORIGIN, MEMORY_NAMES),
        ]
        for workload in ("miss", "nxdomain"):
            for rate in LATENCY_RATES[workload]:
                count = int(rate * self.plan.latency_seconds * 1.2)
                pattern = f"r{rate}-{{}}." + ("wild." if workload == "miss" else "") + ZONE_ORIGIN
                files.append((f"{workload}-{rate}qps", pattern, count))
        for stem, pattern, count in files:
            with (self.workdir / f"{stem}.txt").open("w") as out:
                out.writelines(pattern.format(i) + " A\n" for i in range(count))

    # processes

    def start_knot(self) -> None:
        self.knot_port = free_port()
        conf = self.workdir / "knot.conf"
        conf.write_text(knot_config(self.workdir, self.knot_port, self.workdir / "bench.test.zone"))
        argv = [*self.load_pin, str(find_binary("knotd")), "-c", str(conf)]
        self.knot = self.procs.start("knotd", argv)
        self.procs.wait_ready(self.knot, self.knot_port, FIXED_NAMES[0][0], "A")
        # knotd sets its UDP workers' CPU affinity itself (one landed on CPU 0): pin it back.
        self.repin(self.knot, self.core_ids[1])
        self.commands["1 knotd"] = shlex.join(argv)

    def start_forwarder(
        self, fw: Forwarder, extra: tuple[str, ...] = (), pinned: bool = True
    ) -> tuple[Running, int, int]:
        """Start `fw` on a free port; return it, its DNS port and its metrics port (or 0)."""
        port = free_port()
        metrics_port = 0
        if fw.name == "picodns" and self.pico_metrics:
            metrics_port = free_port()
            extra = (*extra, "-metrics-listen", f"127.0.0.1:{metrics_port}")
        pin = self.server_pin if pinned else self.any_cpu
        argv = fw.argv(self.workdir, port, self.knot_port, pin, extra)
        running = self.procs.start(fw.name, argv)
        self.procs.wait_ready(running, port, FIXED_NAMES[0][0], "A")
        if not pinned:
            self.commands[f"6 {fw.name} {shlex.join(extra[:2])}"] = shlex.join(argv)
            return running, port, metrics_port
        self.repin(running, self.core_ids[0])
        self.commands[f"2 {fw.name}"] = shlex.join(argv)
        if fw.name == "picodns" and not self.pico_banner:
            text = running.log_text().splitlines()
            self.pico_banner = next((ln for ln in text if "listening on" in ln), "")
        return running, port, metrics_port

    def repin(self, running: Running, core: int) -> None:
        """Pin every thread of `running` (and of its children) to `core`, and check it held."""
        if not self.server_pin:
            return
        for pid in _descendants(running.pid):
            subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(pid)], capture_output=True)
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    if os.sched_getaffinity(int(tid)) != {core}:
                        raise RuntimeError(f"{running.name}: thread {tid} is not on CPU {core}")

    def stop_forwarder(self, running: Running) -> list[str]:
        """Stop it by its PID; return the log lines worth reading (and whether it had died)."""
        alive = running.proc.poll() is None
        status = self.procs.stop(running)
        notes = _log_anomalies(running.name, running.log_text())
        if not alive:
            notes.insert(0, f"{running.name}: had exited by itself (status {status})")
        return notes

    def wait_for_quiet(self) -> float:
        """Wait (bounded) until other jobs on the machine are idle; return seconds waited.

        Other jobs skew QPS and latency; q/CPU-s is steadier, but a quiet start helps both.
        """
        start = time.monotonic()
        limit = min(self.plan.quiet_wait, self.quiet_left)
        while machine_busy() > 0.25 and time.monotonic() - start < limit:
            pass
        waited = time.monotonic() - start
        self.quiet_left -= waited
        return waited

    # measurements

    def _run(
        self, key: str, port: int, datafile: Path, args: list[str], limit: float, rt: bool = False
    ) -> Perf:
        pin = ["chrt", "-r", str(RT_PRIORITY), *self.load_pin] if rt else self.load_pin
        perf = dnsperf(pin, port, datafile, args, limit)
        self.commands[key] = shlex.join(perf.argv)
        return perf

    def _latency(
        self, running: Running, port: int, workload: str, rate: int, capacity: float
    ) -> Latency:
        """One fixed-rate run with -v, SCHED_RR (with `rt`) unless near the server's capacity.

        `capacity` is the QPS the server reached at full speed just before. Above 80% of it the
        run stays at normal priority: a saturated real-time process would starve the machine
        (and hit the kernel's real-time throttling), and its latency is queueing delay anyway.
        """
        assert self.knot is not None
        rt = self.rt and rate <= RT_LOAD_LIMIT * capacity
        seconds = self.plan.latency_seconds
        args = ["-l", f"{seconds:g}", "-Q", str(rate), *LATENCY_ARGS]
        if workload == "hit":
            data = self.workdir / "hit.txt"
        else:
            data = self.workdir / f"{workload}-{rate}qps.txt"
            args += ["-n", "1"]
        settle(running.pid)  # the run before may have left a backlog in the server's queue
        cpu0 = cpu_seconds(running.pid)
        key = f"4 dnsperf {workload} {rate} QPS"
        if rt:
            pids = [*_descendants(running.pid), self.knot.pid]
            try:
                set_realtime(pids, True)
                perf = self._run(key, port, data, args, seconds, rt=True)
            finally:
                set_realtime(pids, False)
        else:
            perf = self._run(key, port, data, args, seconds)
        cpu = cpu_seconds(running.pid) - cpu0
        ms = [v * 1000 for v in perf.latencies]
        return Latency(
            rate=rate,
            sent=perf.sent,
            completed=perf.completed,
            lost=perf.lost,
            qps=perf.qps,
            run_time=perf.run_time,
            cpu=cpu,
            p50_ms=percentile(ms, 0.50),
            p99_ms=percentile(ms, 0.99),
            p999_ms=percentile(ms, 0.999),
            max_ms=max(ms, default=0.0),
            rcodes=perf.rcodes,
            rt=rt,
            near_capacity=rate > RT_LOAD_LIMIT * capacity,
        )

    def measure(self, fw: Forwarder, workload: str, round_no: int) -> Measurement:
        """A fresh `fw`: full-speed run of `workload`, then its fixed-rate runs; then stop it."""
        assert self.knot is not None
        waited = self.wait_for_quiet()
        running, port, metrics_port = self.start_forwarder(fw)
        try:
            seconds = f"{self.plan.seconds:g}"
            if workload == "hit":
                # Warm the cache: every fixed name five times, at a gentle rate.
                warm = ["-n", "5", "-Q", "2000", "-t", "2"]
                self._run("3a dnsperf hit warm-up", port, self.workdir / "hit.txt", warm, 10)
                data, extra = self.workdir / "hit.txt", ["-l", seconds]
            else:
                data, extra = self.workdir / f"{workload}.txt", ["-l", seconds, "-n", "1"]
            before = Snapshot.take(running.pid, self.knot.pid)
            args = [*extra, *SATURATION_ARGS]
            perf = self._run(
                f"3 dnsperf {workload} full speed", port, data, args, self.plan.seconds
            )
            after = Snapshot.take(running.pid, self.knot.pid)
            if workload != "hit" and perf.sent >= self.plan.unique_names:
                print(f"  warning: {data.name} ran out of names; raise unique_names", flush=True)
            latency = [
                self._latency(running, port, workload, rate, perf.qps)
                for rate in LATENCY_RATES[workload]
            ]
            metrics = scrape_metrics(metrics_port)
        finally:
            notes = self.stop_forwarder(running)
        used = after.forwarder - before.forwarder
        knot_cpu = after.knot - before.knot
        dnsperf_cpu = after.dnsperf - before.dnsperf
        return Measurement(
            server=fw.name,
            workload=workload,
            round=round_no,
            qps=perf.qps,
            sent=perf.sent,
            completed=perf.completed,
            lost=perf.lost,
            run_time=perf.run_time,
            cpu=used,
            knot_cpu=knot_cpu,
            dnsperf_cpu=dnsperf_cpu,
            other_jobs=after.other_jobs(before),
            kernel_threads=after.kernel - before.kernel,
            udp_drops=after.udp_drops - before.udp_drops,
            rcodes=perf.rcodes,
            latency=latency,
            waited=waited,
            log_lines=notes,
            metrics=metrics,
        )

    def memory(self, fw: Forwarder) -> MemoryResult:
        """A fresh `fw` is sent MEMORY_NAMES distinct names (closed loop, 50 outstanding)."""
        self.wait_for_quiet()
        running, port, metrics_port = self.start_forwarder(fw)
        try:
            start = rss_kib(running.pid)
            args = ["-n", "1", "-l", "180", "-T", "1", "-c", "4", "-q", "50", "-t", "2"]
            began, drops = time.monotonic(), _udp_drops()
            perf = self._run("5 dnsperf memory", port, self.workdir / "memory.txt", args, 180)
            seconds, drops = time.monotonic() - began, _udp_drops() - drops
            settle(running.pid)
            time.sleep(1.0)  # so an answer from the cache shows a TTL below the zone's 3600
            after = rss_kib(running.pid)
            sample = random.Random(6).sample(range(MEMORY_NAMES), 200)
            cached = sum(_from_cache(port, f"mem{i}.wild.{ZONE_ORIGIN}") for i in sample)
            metrics = scrape_metrics(metrics_port)
        finally:
            notes = self.stop_forwarder(running)
        return MemoryResult(
            fw.name,
            start,
            after,
            perf.completed,
            perf.lost,
            seconds,
            cached,
            200,
            drops,
            notes,
            metrics,
        )

    def scaling(self, processes: int, round_no: int) -> ScalingResult:
        """A fresh PicoDNS with `processes` serving processes, nothing pinned: full-speed hits."""
        assert self.knot is not None
        self.wait_for_quiet()
        pico = next(fw for fw in FORWARDERS if fw.name == "picodns")
        extra = ("-processes", str(processes))
        running, port, _ = self.start_forwarder(pico, extra, pinned=False)
        try:
            data = self.workdir / "hit.txt"
            # Warm every process's cache: the same 20 sockets as the run spread over them.
            warm = ["-n", "5", "-Q", "2000", "-c", "20", "-t", "2"]
            dnsperf(self.any_cpu, port, data, warm, 10)
            before = Snapshot.take(running.pid, self.knot.pid)
            idle, began = _idle_ticks(), time.monotonic()
            args = ["-l", f"{self.plan.seconds:g}", *SCALING_ARGS]
            perf = dnsperf(self.any_cpu, port, data, args, self.plan.seconds)
            idle, took = _idle_ticks() - idle, time.monotonic() - began
            after = Snapshot.take(running.pid, self.knot.pid)
            self.commands["7 dnsperf scaling"] = shlex.join(perf.argv)
        finally:
            notes = self.stop_forwarder(running)
        return ScalingResult(
            processes,
            round_no,
            perf.qps,
            perf.completed,
            perf.lost,
            perf.run_time,
            after.forwarder - before.forwarder,
            after.dnsperf - before.dnsperf,
            idle / CLK_TCK / took / self.cpus,
            after.other_jobs(before),
            notes,
        )


def _from_cache(port: int, name: str) -> bool:
    """True when the forwarder answers `name` with a TTL below the zone's (so from its cache)."""
    query = dns.message.make_query(name, "A")
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    except Exception:
        return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer) and reply.answer[0].ttl < 3600


# PicoDNS counters that show trouble or limits being hit; read from /metrics after each run.
_TROUBLE = re.compile(
    r"^picodns_(responses_total\{rcode=\"(?!NOERROR|NXDOMAIN)|upstream_failures_total|"
    r"queue_drops_total|worker_errors_total|malformed_queries_total|dropped|coalesced_total|"
    r"cache_evictions_total|tcp_fallbacks_total|tcp_refused_total)"
)


def scrape_metrics(port: int) -> dict[str, float]:
    """PicoDNS's non-zero trouble counters from 127.0.0.1:`port`/metrics ({} without metrics)."""
    if not port:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError as err:
        return {f"scrape failed: {err}": 1.0}
    found = {}
    for line in text.splitlines():
        if _TROUBLE.match(line):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                if float(value):
                    found[name] = float(value)
    return found


_ANOMALY = re.compile(
    r"WARNING|ERROR|CRITICAL|Traceback|error:|warning:|Maximum number|failed|refused", re.I
)


def _log_anomalies(name: str, text: str) -> list[str]:
    """The lines of a forwarder's log worth reading: warnings, errors, tracebacks, limits hit."""
    return [f"{name}: {ln.strip()}" for ln in text.splitlines() if _ANOMALY.search(ln)]


# --- main ---------------------------------------------------------------------------------------


def _progress(m: Measurement) -> str:
    lat = " ".join(
        f"p50/p99@{x.rate}={x.p50_ms:.3f}/{x.p99_ms:.3f}ms lost@{x.rate}={x.lost}"
        for x in m.latency
    )
    return (
        f"{m.workload:8} round {m.round} {m.server:8} qps={m.qps:7.0f} cpu={m.cpu:5.2f}s "
        f"q/cpu={m.per_cpu:7.0f} lost={m.lost} {lat} "
        f"other={m.other_jobs:.2f}s kthreads={m.kernel_threads:.2f}s "
        f"rcodes={m.rcodes}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
        help="one round of short runs (also BENCH_QUICK=1)",
    )
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write every measurement as JSON here")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument(
        "--no-scaling", action="store_true", help="skip the 1-versus-2-process measurement"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="niceness of every benchmark process (default -10 as root, else 0)",
    )
    parser.add_argument(
        "--rt",
        action=argparse.BooleanOptionalAction,
        default=os.geteuid() == 0,
        help="run the fixed-rate (latency) runs SCHED_RR (default on as root)",
    )
    args = parser.parse_args(argv)

    missing = missing_binaries()
    if missing:
        packages = " ".join(sorted({REQUIRED[m] for m in missing}))
        print(f"bench: missing {', '.join(missing)}; install them with:", file=sys.stderr)
        print(f"  sudo apt-get install -y {packages}", file=sys.stderr)
        return 1
    try:
        import uvloop  # noqa: F401
    except ImportError:
        print(
            "bench: uvloop is missing, so PicoDNS runs on the slower default loop", file=sys.stderr
        )
    workloads = [w for w in args.workloads.split(",") if w]
    if not set(workloads) <= set(WORKLOADS):
        parser.error(f"--workloads: choose from {','.join(WORKLOADS)}")
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = Plan(args.rounds, *list(asdict(plan).values())[1:])

    info = report.machine()  # before this script pins itself to one CPU
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    results: list[Measurement] = []
    memory: list[MemoryResult] = []
    scaling: list[ScalingResult] = []
    retries, redone = plan.retries, 0
    with tempfile.TemporaryDirectory(prefix="picodns-bench-") as tmp, Processes(Path(tmp)) as procs:
        bench = Bench(plan, Path(tmp), procs, args.nice, args.rt)
        bench.write_inputs()
        bench.start_knot()
        print(f"knotd on 127.0.0.1:{bench.knot_port}; {plan}", flush=True)
        print("progress: other = CPU-s of other jobs on the machine during the run", flush=True)
        for workload in workloads:
            for r in range(plan.rounds):
                for fw in FORWARDERS[r % 3 :] + FORWARDERS[: r % 3]:
                    m = bench.measure(fw, workload, r + 1)
                    tries = 0
                    while m.disturbed and retries > 0 and tries < RETRIES_EACH:
                        print(_progress(m), "[disturbed by other jobs: redone]", flush=True)
                        retries -= 1
                        tries += 1
                        redone += 1
                        m = bench.measure(fw, workload, r + 1)
                    results.append(m)
                    print(_progress(m), flush=True)
                    for note in m.log_lines[:3]:
                        print("   ", note, flush=True)
        if not args.no_memory:
            for fw in FORWARDERS:
                memory.append(bench.memory(fw))
                mem = memory[-1]
                print(
                    f"memory   {fw.name:8} rss {mem.rss_start_kib / 1024:.1f} -> "
                    f"{mem.rss_after_kib / 1024:.1f} MiB; answered {mem.completed}, lost "
                    f"{mem.lost}; {mem.cached_sample}/{mem.sample_size} sampled from cache",
                    flush=True,
                )
        if not args.no_scaling and pico_supports("-processes"):
            for r in range(plan.rounds):
                order = SCALING_PROCESSES if r % 2 == 0 else SCALING_PROCESSES[::-1]
                for processes in order:
                    sc = bench.scaling(processes, r + 1)
                    scaling.append(sc)
                    print(
                        f"scaling  round {r + 1} processes={processes} qps={sc.qps:7.0f} "
                        f"cpu={sc.cpu:5.2f}s q/cpu={sc.per_cpu:7.0f} lost={sc.lost} "
                        f"dnsperf={sc.dnsperf_cpu:.2f}s idle={sc.idle:.0%} "
                        f"other={sc.other_jobs:.2f}s",
                        flush=True,
                    )
        section = report.render(
            report.Run(
                quick=args.quick,
                plan=asdict(plan),
                started=started,
                minutes=(time.monotonic() - t0) / 60,
                machine=info,
                pico_banner=bench.pico_banner,
                commands=bench.commands,
                zone=(Path(tmp) / "bench.test.zone").read_text(),
                results=results,
                memory=memory,
                memory_names=MEMORY_NAMES,
                scaling=scaling,
                redone=redone,
                nice=args.nice,
                rt=args.rt,
            )
        )
    print()
    print(section)
    if not args.no_write:
        report.write(args.output, section)
        print(f"wrote {args.output}")
    if args.json:
        payload = {
            "results": [asdict(m) | {"per_cpu": m.per_cpu} for m in results],
            "memory": [asdict(m) for m in memory],
            "scaling": [asdict(m) | {"per_cpu": m.per_cpu} for m in scaling],
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
