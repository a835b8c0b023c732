"""Turn a benchmark run into the Markdown section of BENCHMARKS.md (also printed).

Only the text between the markers is rewritten; notes others write around it are kept.
Cells show the median over rounds and the range; ratios are computed per round (both servers
measured in the same round) and then summarised, since ratios from one run are what count.
"""

from __future__ import annotations

import datetime
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servers import FORWARDERS, find_binary, knot_config, unbound_config

if TYPE_CHECKING:
    from run_bench import Measurement, MemoryResult, ScalingResult

__all__ = ["BEGIN", "END", "Run", "machine", "render", "write"]

BEGIN = "<!-- bench:begin (written by bench/run_bench.py; edit outside these markers) -->"
END = "<!-- bench:end -->"
TIMES, DASH, GE = "\u00d7", "\u2013", "\u2265"
LABEL = {fw.name: fw.label for fw in FORWARDERS}
TITLE = {
    "hit": "Cache hit: 20 fixed names, cache warmed first",
    "miss": "Cache miss: unique names under the wildcard `*.wild.bench.test`",
    "nxdomain": "NXDOMAIN: unique names `nx-<n>.bench.test`, every one a negative cache miss",
}
EXPECTED = {"hit": "NOERROR", "miss": "NOERROR", "nxdomain": "NXDOMAIN"}


@dataclass
class Run:
    """Everything the report shows about one run."""

    quick: bool
    plan: dict[str, Any]
    started: datetime.datetime
    minutes: float
    machine: list[str]
    pico_banner: str
    commands: dict[str, str]
    zone: str
    results: list[Measurement]
    memory: list[MemoryResult]
    memory_names: int
    redone: int
    nice: int
    rt: bool
    scaling: list[ScalingResult]


# --- formatting ---------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _k(value: float) -> str:
    return f"{value / 1000:.1f}k"


def _ms(value: float) -> str:
    return f"{value:.3f}"


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _span(values: list[float], fmt: Callable[[float], str] = _k) -> str:
    """Median (min-max), or the value alone when there is one."""
    if not values:
        return DASH
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(_median(values))} ({fmt(min(values))}{DASH}{fmt(max(values))})"


def _ratio(values: list[float]) -> str:
    return _span(values, lambda v: f"{v:.2f}{TIMES}")


def _select(results: list[Measurement], workload: str, server: str) -> list[Measurement]:
    return [m for m in results if (m.workload, m.server) == (workload, server)]


def ratios(
    results: list[Measurement], workload: str, other: str, attr: str = "per_cpu"
) -> list[float]:
    """PicoDNS ÷ `other` for `attr`, one value per round in which both were measured."""
    out = []
    for r in sorted({m.round for m in results}):
        pico = [m for m in _select(results, workload, "picodns") if m.round == r]
        them = [m for m in _select(results, workload, other) if m.round == r]
        if pico and them and getattr(them[0], attr) > 0:
            out.append(getattr(pico[0], attr) / getattr(them[0], attr))
    return out


def _rates(results: list[Measurement], workload: str) -> list[int]:
    return sorted(
        {lat.rate for m in results if m.workload == workload for lat in m.latency}, reverse=True
    )


def _lat(ms: list[Measurement], rate: int, attr: str) -> list[float]:
    out = []
    for m in ms:
        lat = m.at(rate)
        if lat is not None:
            out.append(float(getattr(lat, attr)))
    return out


# --- tables -------------------------------------------------------------------------------------


def headline(run: Run) -> list[str]:
    rows = [
        "| server | cache-hit q/CPU-s | cache-miss q/CPU-s | NXDOMAIN q/CPU-s | cache-hit QPS "
        f"| RSS holding {run.memory_names:,} names |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for fw in FORWARDERS:
        cells = [
            _span([m.per_cpu for m in _select(run.results, w, fw.name)])
            for w in ("hit", "miss", "nxdomain")
        ]
        hit_qps = _span([m.qps for m in _select(run.results, "hit", fw.name)])
        mem = next((x for x in run.memory if x.server == fw.name), None)
        rss = f"{mem.rss_after_kib / 1024:.0f} MiB" if mem else DASH
        rows.append(f"| {fw.label} | {' | '.join(cells)} | {hit_qps} | {rss} |")
    return rows


def targets(run: Run) -> list[str]:
    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    rows = ["| target (issue 6) | measured | |", "|---|---:|---|"]
    hit = ratios(run.results, "hit", "dnsmasq")
    if hit:
        rows.append(
            f"| cache hit: q/CPU-s {GE} 0.8 {TIMES} dnsmasq | {_ratio(hit)} "
            f"| {verdict(_median(hit) >= 0.8)} |"
        )
    for workload in ("miss", "nxdomain"):
        ratio = ratios(run.results, workload, "unbound")
        if ratio:
            rows.append(
                f"| {workload}: q/CPU-s {GE} 1.25 {TIMES} Unbound | {_ratio(ratio)} "
                f"| {verdict(_median(ratio) >= 1.25)} |"
            )
    for workload, limit in (("hit", 0.3), ("miss", 2.0)):
        ms = _select(run.results, workload, "picodns")
        p99 = _lat(ms, 5000, "p99_ms")
        over = " †" if any(_lat(ms, 5000, "near_capacity")) else ""
        if p99:
            rows.append(
                f"| {workload}: p99 at 5,000 QPS offered < {limit} ms | {_span(p99, _ms)} ms{over} "
                f"| {verdict(_median(p99) < limit)} |"
            )
        low = _lat(ms, 1000, "p99_ms")
        if low and over:
            rows.append(
                f"| (not a target) {workload}: p99 at 1,000 QPS, below capacity here "
                f"| {_span(low, _ms)} ms | |"
            )
    pico = [m for m in run.results if m.server == "picodns"]
    if pico:
        below = sum(x.lost for m in pico for x in m.latency if not x.near_capacity)
        above = sum(x.lost for m in pico for x in m.latency if x.near_capacity)
        full = sum(m.lost for m in pico)
        fill = sum(x.lost for x in run.memory if x.server == "picodns")
        rows.append(
            f"| no lost queries below saturation (fixed rates below 80% of capacity) "
            f"| {below} lost | {verdict(below == 0)} |"
        )
        rows.append(
            f"| (not a target) PicoDNS lost queries elsewhere | {full} at full speed, {above} in "
            f"fixed-rate runs marked †, {fill} in the memory fill | |"
        )
    return rows


def workload_table(run: Run, workload: str) -> list[str]:
    rates = _rates(run.results, workload)
    head = (
        "| server | QPS | CPU busy | q/CPU-s | PicoDNS ÷ this (q/CPU-s) | lost "
        f"| not {EXPECTED[workload]} |"
    )
    align = "|---|---:|---:|---:|---:|---:|---:|"
    for rate in rates:
        at = f"@{rate // 1000}k"
        head += f" p50 / p99 ms {at} | answered QPS {at} | lost {at} | CPU busy {at} |"
        align += "---:|---:|---:|---:|"
    rows = [head, align]
    for fw in FORWARDERS:
        ms = _select(run.results, workload, fw.name)
        if not ms:
            continue
        vs = "1" if fw.name == "picodns" else _ratio(ratios(run.results, workload, fw.name))
        row = (
            f"| {fw.label} | {_span([m.qps for m in ms])} | {_span([m.busy for m in ms], _pct)} "
            f"| {_span([m.per_cpu for m in ms])} | {vs} | {sum(m.lost for m in ms)} "
            f"| {sum(m.wrong_rcodes for m in ms)} |"
        )
        for rate in rates:
            p50 = _median(_lat(ms, rate, "p50_ms"))
            p99 = _span(_lat(ms, rate, "p99_ms"), _ms)
            if any(_lat(ms, rate, "near_capacity")):
                p99 += " †"
            row += (
                f" {p50:.3f} / {p99} | {_span(_lat(ms, rate, 'qps'))} "
                f"| {sum(_lat(ms, rate, 'lost')):.0f} | {_pct(_median(_lat(ms, rate, 'busy')))} |"
            )
        rows.append(row)
    return rows


def memory_table(run: Run) -> list[str]:
    rows = [
        f"| server | RSS at start | RSS after {run.memory_names:,} names | growth | answered "
        "| lost | fill time | UDP drops | sampled names answered from cache |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in run.memory:
        rows.append(
            f"| {LABEL[m.server]} | {m.rss_start_kib / 1024:.1f} MiB "
            f"| {m.rss_after_kib / 1024:.1f} MiB "
            f"| {(m.rss_after_kib - m.rss_start_kib) / 1024:.1f} MiB | {m.completed} | {m.lost} "
            f"| {m.seconds:.1f} s | {m.udp_drops} | {m.cached_sample}/{m.sample_size} |"
        )
    return rows


def scaling_table(run: Run) -> list[str]:
    """Hit QPS and q/CPU-s per number of serving processes; the ratio to 1 process per round."""
    rows = [
        "| serving processes | hit QPS | QPS ÷ 1 process | server CPU busy | dnsperf CPU busy "
        "| CPUs idle | q/CPU-s | lost |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    one = {x.round: x.qps for x in run.scaling if x.processes == 1}
    for n in sorted({x.processes for x in run.scaling}):
        mine = [x for x in run.scaling if x.processes == n]
        gains = [x.qps / one[x.round] for x in mine if one.get(x.round)]
        rows.append(
            f"| {n} | {_span([x.qps for x in mine])} | {_ratio(gains)} "
            f"| {_span([x.cpu / x.run_time for x in mine], _pct)} "
            f"| {_span([x.dnsperf_cpu / x.run_time for x in mine], _pct)} "
            f"| {_span([x.idle for x in mine], _pct)} "
            f"| {_span([x.per_cpu for x in mine])} | {sum(x.lost for x in mine)} |"
        )
    return rows


def pico_counters(run: Run) -> list[str]:
    """PicoDNS's non-zero trouble counters, summed per workload over its rounds."""
    per: dict[str, dict[str, float]] = {}
    for m in run.results:
        for name, value in m.metrics.items():
            per.setdefault(m.workload, {}).setdefault(name, 0.0)
            per[m.workload][name] += value
    for x in run.memory:
        for name, value in x.metrics.items():
            per.setdefault("memory", {})[name] = value
    if not per:
        return ["None: every PicoDNS trouble counter stayed at zero (or /metrics was off)."]
    rows = ["| workload | counter | total over the runs |", "|---|---|---:|"]
    for workload, counters in per.items():
        for name, value in sorted(counters.items()):
            rows.append(f"| {workload} | `{name}` | {value:.0f} |")
    return rows


_NOISE = re.compile(
    r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+ ?|\[\d+\]|\[\d+:\d+\]|127\.0\.0\.1[:#@]\d+"
)


def log_lines(run: Run) -> list[str]:
    notes = [n for m in run.results for n in m.log_lines]
    notes += [n for x in run.memory for n in x.log_lines]
    notes += [n for x in run.scaling for n in x.log_lines]
    if not notes:
        return ["None: no warnings or errors in any forwarder's log."]
    counts: dict[str, int] = {}
    for note in notes:
        key = _NOISE.sub("", note).replace("  ", " ")
        counts[key] = counts.get(key, 0) + 1
    return ["```", *(f"{n:6d} {TIMES} {k}" for k, n in sorted(counts.items())), "```"]


def raw_table(run: Run) -> list[str]:
    rows = [
        "| workload | round | server | QPS | answered | lost | CPU-s | knotd CPU-s | dnsperf CPU-s "
        "| kernel threads CPU-s | other jobs CPU-s | UDP drops "
        "| fixed rate: p50/p99/p99.9/max ms, lost | rcodes |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for m in run.results:
        codes = ", ".join(f"{k} {v}" for k, v in sorted(m.rcodes.items()))
        lats = "; ".join(
            f"@{x.rate}: {x.p50_ms:.3f}/{x.p99_ms:.3f}/{x.p999_ms:.3f}/{x.max_ms:.1f}, {x.lost}"
            for x in m.latency
        )
        bad = {k: v for x in m.latency for k, v in x.rcodes.items() if k != EXPECTED[m.workload]}
        if bad:
            codes += "; fixed rate " + ", ".join(f"{k} {v}" for k, v in sorted(bad.items()))
        rows.append(
            f"| {m.workload} | {m.round} | {m.server} | {m.qps:.0f} | {m.completed} | {m.lost} "
            f"| {m.cpu:.2f} | {m.knot_cpu:.2f} | {m.dnsperf_cpu:.2f} "
            f"| {m.kernel_threads:.2f} | {m.other_jobs:.2f} "
            f"| {m.udp_drops} | {lats} | {codes} |"
        )
    return rows


# --- machine ------------------------------------------------------------------------------------


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (out.stdout + out.stderr).strip().splitlines()
    return next((ln.strip() for ln in lines if re.search(r"[Vv]ersion", ln)), "?")


def machine() -> list[str]:
    """Markdown bullets describing this machine and the tools' versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mhz = re.search(r"cpu MHz\s*:\s*(.*)", cpuinfo)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    free = subprocess.run(["free", "-m"], capture_output=True, text=True).stdout.rstrip()
    kind = "virtual machine" if re.search(r"^flags.*\bhypervisor\b", cpuinfo, re.M) else "host"
    root = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    changed = len(dirty.stdout.splitlines())
    return [
        f"- PicoDNS at commit `{head.stdout.strip()[:90]}`"
        + (f", plus uncommitted changes in {changed} file(s) under src/" if changed else ""),
        f"- CPU: {model.group(1) if model else '?'}, {mhz.group(1) if mhz else '?'} MHz "
        f"(/proc/cpuinfo); `nproc` = {nproc}; Linux {platform.release()} ({kind})",
        f"- Python {platform.python_version()} ({sys.executable})",
        f"- dnsperf {_version([str(find_binary('dnsperf')), '-h'])}; "
        f"{_version([str(find_binary('knotd')), '-V'])}; "
        f"{_version([str(find_binary('dnsmasq')), '-v']).split('  ')[0]}; "
        f"Unbound {_version([str(find_binary('unbound')), '-V'])}",
        "- `free -m`:",
        "",
        "```",
        free,
        "```",
    ]


# --- the section --------------------------------------------------------------------------------


def render(run: Run) -> str:
    """The Markdown section for `run`, markers included."""
    plan = run.plan
    banner = run.pico_banner.split(" INFO ", 1)[-1]
    out = [
        BEGIN,
        "",
        f"## Last run: {'`BENCH_QUICK=1` smoke run' if run.quick else 'full run'}, "
        f"{run.started:%Y-%m-%d %H:%M} UTC",
        "",
        f"{run.minutes:.1f} minutes; {plan['rounds']} interleaved round(s); full-speed runs of "
        f"{plan['seconds']:g} s; fixed-rate runs of {plan['latency_seconds']:g} s. Cells: median "
        f"over rounds (range). Ratios: PicoDNS ÷ the other server within each round, then median "
        f"(range). Benchmark processes at nice {run.nice}; fixed-rate runs "
        + ("SCHED_RR." if run.rt else "at normal priority (so p99 includes other jobs' slices)."),
        "",
        "### Machine",
        "",
        *run.machine,
        "",
        f"- PicoDNS startup line: `{banner}`",
        "",
        "### Summary",
        "",
        *headline(run),
        "",
        "### Targets from issue 6",
        "",
        *targets(run),
        "",
    ]
    for workload in TITLE:
        if any(m.workload == workload for m in run.results):
            out += [f"### {TITLE[workload]}", "", *workload_table(run, workload), ""]
    out += [
        "'CPU busy' is the server's CPU seconds ÷ run time: near 100% means the server, not the "
        "load generator, set the pace. † marks a fixed rate above 80% of what that server reached "
        "at full speed (in at least one round): it ran at normal priority, and its latency is "
        "mostly queueing delay. 'answered QPS' below the offered rate means the server could not "
        "keep up (dnsperf stops sending at 100 outstanding queries).",
        "",
    ]
    if run.memory:
        out += [
            f"### Memory after caching {run.memory_names:,} distinct names",
            "",
            *memory_table(run),
            "",
            "dnsmasq runs with `--cache-size=10000`, as in issue 6, so it keeps only the last "
            "10,000 names (dnsmasq 2.90 accepts a larger size but warns that more than 10,000 "
            "'may cause performance issues'). PicoDNS (`-cache-size 200000`) and Unbound "
            "(msg-cache 128 MB, rrset-cache 256 MB) can hold all of them. The last column "
            "re-asks 200 random names of the 100,000 a second later and counts answers whose TTL "
            "is below the zone's 3600, i.e. answers from the cache.",
            "",
        ]
    if run.scaling:
        out += [
            "### PicoDNS on one and on two serving processes (`-processes`), cache hits",
            "",
            *scaling_table(run),
            "",
            "Nothing pinned here, neither PicoDNS nor dnsperf (`-T 2 -c 20`, so that "
            "SO_REUSEPORT spreads the 20 client sockets over the processes); rounds interleaved. "
            "CPU busy: CPU-seconds ÷ run time (100% = one core); 'CPUs idle': the share of all "
            "CPUs' time nobody used during the run (/proc/stat). When the server and dnsperf "
            "together use about all the cores there are and little is idle, a second serving "
            "process can only take CPU time from the load generator: the gain is bounded by the "
            "machine, not by PicoDNS.",
            "",
        ]
    out += [
        "### PicoDNS trouble counters (from its /metrics after each measurement)",
        "",
        *pico_counters(run),
        "",
        "### Forwarder log lines worth reading (timestamps and ports removed, counted)",
        "",
        *log_lines(run),
        "",
        "### Every run",
        "",
        *raw_table(run),
        "",
        "All CPU columns cover the full-speed run. 'kernel threads': workqueues, RCU and the like, "
        "much of it the teardown of the sockets servers open per upstream query. 'other jobs': "
        "every other user-space task on the machine (it is shared); a measurement where they took "
        "over an eighth of the two CPUs is redone, a few times at most per run "
        f"({run.redone} redone in this run). 'UDP drops': the machine-wide RcvbufErrors + "
        "SndbufErrors counters (/proc/net/snmp).",
        "",
        "### Exact commands of this run",
        "",
        "Ports are picked free at run time; `/tmp/picodns-bench-*` is deleted afterwards.",
        "",
        "```",
        *(cmd for _key, cmd in sorted(run.commands.items())),
        "```",
        "",
        "knotd config (`$TMP` is the temp dir):",
        "",
        "```yaml",
        knot_config(Path("$TMP"), 0, Path("$TMP/bench.test.zone")).replace("@0", "@$PORT").rstrip(),
        "```",
        "",
        "Unbound config:",
        "",
        "```yaml",
        unbound_config(Path("$TMP"), 0, 0)
        .replace("port: 0", "port: $PORT")
        .replace("@0", "@$KNOT_PORT")
        .rstrip(),
        "```",
        "",
        "Zone:",
        "",
        "```",
        run.zone.rstrip(),
        "```",
        "",
        END,
    ]
    return "\n".join(out) + "\n"


INTRO = """# PicoDNS benchmarks

`make bench` measures PicoDNS beside dnsmasq and Unbound, all three as caching forwarders in front
of the same authoritative Knot DNS on loopback, with dnsperf as the load generator (about nine
minutes). `BENCH_QUICK=1 make bench` is a two-minute smoke version: one round, shorter runs. The
section between the markers below is rewritten by every run; notes outside it are kept.

## How it measures (bench/run_bench.py, bench/servers.py, bench/report.py)

- **Pinning.** On a machine with two CPUs the forwarder runs on the first (`taskset -c 0`);
  dnsperf and knotd share the second (`taskset -c 1`). The orchestrator pins itself to the second
  too and sleeps while dnsperf runs.
- **Priority.** As root, every process of the benchmark runs at `nice -n -10`, so other jobs on
  a shared machine interrupt it less (all servers alike). The fixed-rate runs go further: for
  their few seconds the forwarder (every thread), knotd and dnsperf run SCHED_RR (`chrt -r 10`),
  because on a shared machine a p99 at normal priority measures the other tenants: a cache hit
  at 5,000 QPS had a p99 of about 3 ms on all three servers that way, about 0.1 ms under
  SCHED_RR. A saturated real-time process would starve the machine, so full-speed runs never
  run SCHED_RR, nor does a fixed-rate run that offers more than 80% of the QPS the same server
  reached at full speed moments before (marked † in the tables). `--no-rt` and `--nice 0` turn
  both off.
- **Workloads.** *Hit*: 20 fixed names (17 A, one AAAA, one MX, one ~1 KB TXT) repeated; each is
  asked five times first so the cache is warm. dnsmasq gets `--cache-rr=TXT,MX`, because by
  default it caches only A, AAAA, CNAME and SRV and would forward the MX and TXT every time.
  *Miss*: unique names under the wildcard `*.wild.bench.test`, so every query is forwarded.
  *NXDOMAIN*: unique names that do not exist (`nx-<n>.bench.test`), so every query is forwarded
  too: this measures forwarding (and storing) a negative answer, not serving one from the cache.
  Every query carries EDNS0 (`dnsperf -e`), as modern stubs do; the TXT answer fits the 1232-byte
  payload all three servers use.
- **Full speed, for QPS and CPU.** `dnsperf -l S -T 1 -c 4 -q 100 -t 2` with no `-Q` (plus
  `-n 1` for unique names, so none is asked twice). 100 outstanding queries stay below dnsmasq's
  default of 150 concurrent forwards (above it dnsmasq answers REFUSED) and do not overflow
  socket buffers. The forwarder's CPU seconds are utime+stime from /proc/PID/stat (all its
  threads, and its child processes if it has any) read right before and after the run;
  **q/CPU-s** = answered queries ÷ those CPU seconds. It is the steadier figure: the load
  generator on the other CPU caps raw QPS for the fastest servers, and the machine is shared.
  IRQ and softirq time (the kernel moving packets) is accounted to no process, so it is in no
  server's CPU seconds.
- **Fixed rate, for latency.** `dnsperf -Q RATE -l S -v ...`; p50/p99 are computed from the
  per-query latencies that `-v` prints (microsecond resolution, measured by dnsperf in C).
  dnsperf 2.10 has no latency-histogram option, and its own per-query times are more precise than
  a Python client's would be. 5,000 QPS for every workload (issue 6's figure) and, for misses and
  NXDOMAIN, 1,000 QPS too, which is below every server's miss capacity even on a slow machine.
  Each fixed-rate run of misses uses its own file of unique names, so they stay misses. The
  rates run lowest first, each once the server has gone idle (no backlog left from the run
  before).
- **Interleaving.** Each workload runs N rounds of [the three servers], the order rotating each
  round. Every measurement starts a fresh forwarder (cold cache; the hit workload warms it) and
  stops it by its PID afterwards. Before each measurement the script waits, bounded, for other
  jobs on the machine to go quiet, and records the CPU they used anyway.
- **Memory.** A fresh forwarder per server is sent 100,000 distinct names (`dnsperf -n 1 -q 50`,
  a closed loop, so the server sets the pace); VmRSS from /proc/PID/status before and after.
- **PicoDNS counters.** When PicoDNS has `-metrics-listen`, it runs with it on a loopback port and
  the script reads /metrics after each measurement, reporting every non-zero counter of drops,
  failures, errors, evictions and coalescing.
- **Safety.** Every server listens on 127.0.0.1 only and every forwarder forwards only to the
  loopback knotd (dnsmasq: `--conf-file=/dev/null --no-resolv --no-hosts`; Unbound: its own temp
  config with one `forward-zone "."`, iterator module only, no trust anchors, no remote control).
  Every load run is bounded by `-l` (and `-n`) and a subprocess timeout; every process is stopped
  by its PID, also on failure.

"""


def write(path: Path, section: str) -> None:
    """Replace the marked section of `path` (or create the file), keeping everything else."""
    old = path.read_text() if path.exists() else INTRO
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + section + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + section
    path.write_text(new)
