"""Supervisor: ``-processes N`` serving processes on the same addresses, to use more than one core.

With N > 1 the command serves no DNS itself. It starts N children, each a whole PicoDNS (its own
event loop, cache and counters) whose UDP and TCP sockets bind the same addresses with
SO_REUSEPORT, so the kernel spreads clients across them by a hash of the client's address and
port. The supervisor resolves port-0 listen addresses first (bind, read the port, close), so that
every child binds the same port; restarts a child that exits when it was not told to, after a
backoff of 0.5 s that doubles up to 10 s while restarts keep failing, with one log line each
time; forwards SIGTERM/SIGINT to the children, waits for them (at most ``STOP_WAIT``, then
SIGKILL) and exits 0. With ``-metrics-listen`` it serves /metrics, /health and /ready itself:
each child serves its own endpoint on 127.0.0.1:0, and a scrape reads them all and sums them.

Rules this module keeps:

- The supervisor never holds a socket in a reuseport group: the kernel would hand a share of the
  clients to a socket that nobody reads. Its probe sockets are closed before any child starts.
- Children are new interpreters (``python -m picodns`` with the hidden first word
  :data:`~picodns.cli.CHILD_FLAG` and the child's Config as JSON), not forks. A restart happens
  while the supervisor's event loop runs, and a fork taken then copies that loop, its signal
  wakeup fd and the child-watcher thread's locks into the child; a fresh interpreter starts
  clean every time, on uvloop or not. The cost, an interpreter start (~0.2 s) per child and no
  copy-on-write sharing, is paid at start and restart only.
- A child talks to the supervisor over two pipes: it writes one line ``ready METRICS_PORT`` to
  its stdout once it serves (0: no metrics endpoint), and reads its stdin, which the supervisor
  never writes, so end-of-file means the supervisor is gone and the child stops: no orphans
  after a SIGKILL of the supervisor.
- A scrape sums every sample with the same name and labels across the children, except
  ``picodns_start_time_seconds`` (the earliest) and ``picodns_build_info`` (the largest), and
  adds ``picodns_processes`` (children serving) and ``picodns_process_restarts_total``. A
  restarted child's counters start again from zero, as after any process restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector as _CollectorBase

from picodns import __version__
from picodns.cli import CHILD_FLAG, bind_listeners, run_loop, serve, setup_logging
from picodns.config import Config, format_hostport, quote
from picodns.exposition import MetricsEndpoint
from picodns.resolver import Resolver
from picodns.server import Listener, Server

__all__ = [
    "RESTART_FIRST",
    "RESTART_MAX",
    "STOP_WAIT",
    "child_main",
    "decode_config",
    "encode_config",
    "merge_metrics",
    "supervise",
]

RESTART_FIRST = 0.5  # seconds before restarting a child that died; doubles while it keeps dying
RESTART_MAX = 10.0  # the longest wait; a child that served this long starts again at the first
STOP_WAIT = 10.0  # seconds children get to exit after the forwarded signal, then SIGKILL
SCRAPE_TIMEOUT = 2.0  # seconds for one child's /metrics or /ready
_MAX_SCRAPE = 16 * 1024 * 1024  # bytes of one child's reply; far beyond any real exposition
_MIN_SAMPLES = frozenset({"picodns_start_time_seconds"})  # the earliest process start
_MAX_SAMPLES = frozenset({"picodns_build_info"})  # always 1: summing would count processes

_log = logging.getLogger("picodns")


# --- the supervisor -----------------------------------------------------------------------------


def supervise(config: Config) -> int:
    """Run ``config.processes`` children serving `config` until SIGTERM or SIGINT.

    Returns the exit status: 0 after a signal (every child stopped), 1 when a listen or metrics
    address cannot be bound or a child fails before it serves (each reported on stderr, as
    one line, by whichever process found it). Raises nothing for operator mistakes.
    """
    setup_logging(config.log_level, config.log_format)
    listen = _resolve_ports(config.listen)
    if listen is None:
        return 1
    child = dataclasses.replace(
        config,
        listen=listen,
        processes=1,
        metrics_listen=("127.0.0.1", 0) if config.metrics_listen is not None else None,
    )
    command = (sys.executable, "-m", "picodns", CHILD_FLAG, encode_config(child))
    # The supervisor's loop only waits on children and a few scrapes: the stdlib loop will do.
    return asyncio.run(_Supervisor(config, listen, command).run())


def _resolve_ports(listen: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...] | None:
    """Bind every address once (no SO_REUSEPORT) to learn port-0 ports and to report an address
    in use exactly as one process would; close the sockets. None after the one-line error."""
    listeners = bind_listeners(listen)
    if listeners is None:
        return None
    resolved = []
    for (host, _), listener in zip(listen, listeners, strict=True):
        resolved.append((host, int(listener.udp.getsockname()[1])))
        listener.udp.close()
        listener.tcp.close()
    return tuple(resolved)


@dataclass(eq=False)
class _Child:
    """One running child process and what it told us."""

    slot: int
    proc: asyncio.subprocess.Process
    metrics_port: int = 0
    ready_at: float | None = None  # time.monotonic() when it said it serves

    @property
    def serving(self) -> bool:
        return self.ready_at is not None and self.proc.returncode is None


class _Supervisor:
    def __init__(
        self, config: Config, listen: tuple[tuple[str, int], ...], command: Sequence[str]
    ) -> None:
        self.config = config
        self.listen = listen
        self.command = command
        self.children: list[_Child | None] = [None] * config.processes
        self.restarts = 0
        self.stopping = asyncio.Event()
        self.signal: int | None = None  # the signal that began the shutdown, forwarded

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signum)
        endpoint: MetricsEndpoint | None = None
        metrics_at: tuple[str, int] | None = None
        if self.config.metrics_listen is not None:
            endpoint = MetricsEndpoint(
                self.metrics, self.ready, self.healthy, b"no process has a healthy upstream\n"
            )
            try:
                metrics_at = await endpoint.start(*self.config.metrics_listen)
            except OSError as err:
                where = format_hostport(*self.config.metrics_listen)
                reason = os.strerror(err.errno) if err.errno else str(err)
                print(f"picodns: -metrics-listen {where}: cannot bind: {reason}", file=sys.stderr)
                return 1
        first = [loop.create_future() for _ in self.children]
        keepers = [asyncio.ensure_future(self._keep(i, f)) for i, f in enumerate(first)]
        status = 0
        if await self._first(first):
            self._log_start(metrics_at)
            await self.stopping.wait()
        elif not self.stopping.is_set():
            status = 1  # a child could not start and said why on stderr
            self.stop(signal.SIGTERM)
        await self._wait_for_children(keepers)
        if endpoint is not None:
            await endpoint.stop()
        _log.info("picodns stopped")
        return status

    def stop(self, signum: int) -> None:
        """Begin the shutdown: forward `signum` to every child (once: a second signal would
        interrupt a child's own orderly exit)."""
        if self.signal is not None:
            return
        self.signal = signum
        self.stopping.set()
        for child in self.children:
            if child is not None:
                _send(child.proc, signum)

    async def _first(self, first: list[asyncio.Future[bool]]) -> bool:
        """Wait until every child serves (True), one fails before it does, or a signal."""
        stopped = asyncio.ensure_future(self.stopping.wait())
        pending: set[asyncio.Future[Any]] = {*first, stopped}
        try:
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if stopped in done or not all(f.result() for f in done):
                    return False
                if pending == {stopped}:
                    return True
        finally:
            stopped.cancel()

    async def _keep(self, slot: int, first: asyncio.Future[bool]) -> None:
        """Keep one child running in `slot` until the shutdown; restart it with backoff."""
        delay = RESTART_FIRST
        while not self.stopping.is_set():
            child = await self._spawn(slot)
            if not first.done():
                first.set_result(child is not None and child.ready_at is not None)
                if not first.result():
                    return  # a failed start stops the supervisor; no restarts
            if child is not None:
                status = await child.proc.wait()
                if self.stopping.is_set():
                    return
                if child.ready_at is not None and time.monotonic() - child.ready_at >= RESTART_MAX:
                    delay = RESTART_FIRST  # it served a good while: not a crash loop
                _log.warning(
                    "child %d (pid %d) %s; restarting it in %gs",
                    slot,
                    child.proc.pid,
                    _exit_reason(status),
                    delay,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                return
            delay = min(delay * 2, RESTART_MAX)
            self.restarts += 1

    async def _spawn(self, slot: int) -> _Child | None:
        """Start a child and wait until it serves or exits. None when it cannot even start."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        except OSError as err:
            _log.error("child %d: cannot start a process: %s", slot, err.strerror or err)
            return None
        child = _Child(slot, proc)
        self.children[slot] = child
        if self.signal is not None:  # the shutdown began while it started
            _send(proc, self.signal)
        assert proc.stdout is not None
        words = (await proc.stdout.readline()).split()
        if len(words) == 2 and words[0] == b"ready" and words[1].isdigit():
            child.metrics_port = int(words[1])
            child.ready_at = time.monotonic()
        return child

    async def _wait_for_children(self, keepers: Sequence[asyncio.Future[None]]) -> None:
        """Wait (bounded) for every child to exit after the forwarded signal; kill the rest."""
        _, late = await asyncio.wait(keepers, timeout=STOP_WAIT)
        if late:
            for child in self.children:
                if child is not None and child.proc.returncode is None:
                    _log.warning(
                        "child %d (pid %d) did not stop within %gs; killing it",
                        child.slot,
                        child.proc.pid,
                        STOP_WAIT,
                    )
                    _send(child.proc, signal.SIGKILL)
        await asyncio.gather(*keepers, return_exceptions=True)

    def _log_start(self, metrics_at: tuple[str, int] | None) -> None:
        c = self.config
        _log.info(
            "picodns %s listening on %s (udp+tcp); upstreams %s; processes=%d (pids %s) "
            "workers=%d queue=%d cache=%d timeout=%gs tcp-max-connections=%d metrics=%s",
            __version__,
            ",".join(format_hostport(host, port) for host, port in self.listen),
            ",".join(format_hostport(host, port) for host, port in c.upstreams),
            c.processes,
            ",".join(str(child.proc.pid) for child in self.children if child is not None),
            c.workers,
            c.queue_size,
            c.cache_size,
            c.timeout,
            c.tcp_max_connections,
            format_hostport(*metrics_at) if metrics_at else "off",
        )

    # --- the public endpoint --------------------------------------------------------------------

    def _serving(self) -> list[_Child]:
        return [child for child in self.children if child is not None and child.serving]

    def healthy(self) -> bool:
        """/health: at least one child serves."""
        return bool(self._serving())

    async def ready(self) -> bool:
        """/ready: at least one child is ready (has a healthy upstream)."""
        replies = await asyncio.gather(
            *(_http_get(child.metrics_port, "/ready") for child in self._serving())
        )
        return any(status == 200 for status, _ in replies)

    async def metrics(self) -> bytes:
        """/metrics: every serving child's metrics, summed, and the supervisor's own."""
        serving = self._serving()
        replies = await asyncio.gather(
            *(_http_get(child.metrics_port, "/metrics") for child in serving)
        )
        texts = (body.decode(errors="replace") for status, body in replies if status == 200)
        families = merge_metrics(texts)
        families.append(
            GaugeMetricFamily(
                "picodns_processes", "Serving processes (children of the supervisor).", len(serving)
            )
        )
        families.append(
            CounterMetricFamily(
                "picodns_process_restarts",
                "Serving processes restarted after they exited unexpectedly.",
                self.restarts,
            )
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        return generate_latest(registry)


def _send(proc: asyncio.subprocess.Process, signum: int) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)


def _exit_reason(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-status).name}"
        return f"was killed by signal {-status}"
    return f"exited with status {status}"


# --- metrics: merge the children's expositions ----------------------------------------------


class _Families(_CollectorBase):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merge_metrics(texts: Iterable[str]) -> list[Metric]:
    """Merge Prometheus text expositions of several processes into one.

    Returns the metric families in order of first appearance, each sample being the sum of the
    samples with the same name and labels, except ``picodns_start_time_seconds`` (the minimum)
    and ``picodns_build_info`` (the maximum). A text that does not parse is left out whole.
    Raises nothing.
    """
    families: dict[str, Metric] = {}
    # family name -> (sample name, labels sorted) -> [labels as first seen, value]
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]] = {}
    for text in texts:
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError:
            continue  # a child that died mid-reply; its numbers are not counted at all
        for family in parsed:
            if family.name not in families:
                families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
                values[family.name] = {}
            combine = _combiner(family.name)
            samples = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                seen = samples.get(key)
                if seen is None:
                    samples[key] = [sample.labels, sample.value]
                else:
                    seen[1] = combine(seen[1], sample.value)
    for name, family in families.items():
        for (sample_name, _), (labels, value) in values[name].items():
            family.add_sample(sample_name, labels, value)
    return list(families.values())


def _combiner(name: str) -> Callable[[float, float], float]:
    if name in _MIN_SAMPLES:
        return min
    if name in _MAX_SAMPLES:
        return max
    return lambda a, b: a + b


async def _http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET `path` from a child's endpoint on 127.0.0.1:`port`: (status, body), (0, b"") when
    the child does not answer in time (it may just have died)."""
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
                data = await reader.read(_MAX_SCRAPE + 1)
                while len(data) <= _MAX_SCRAPE:
                    more = await reader.read(_MAX_SCRAPE + 1 - len(data))
                    if not more:
                        break
                    data += more
            finally:
                writer.close()
    except (TimeoutError, OSError):
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    words = head.split(b" ", 2)
    if len(data) > _MAX_SCRAPE or len(words) < 2 or not words[1].isdigit():
        return 0, b""
    return int(words[1]), body


# --- a child ------------------------------------------------------------------------------------


def encode_config(config: Config) -> str:
    """Return `config` as one JSON word for a child's command line. Raises nothing."""
    return json.dumps(dataclasses.asdict(config), separators=(",", ":"))


def decode_config(text: str) -> Config:
    """Return the Config that :func:`encode_config` spelled as `text`.

    Raises ValueError when `text` is not JSON, or TypeError when it does not name exactly the
    fields of Config.
    """
    fields = json.loads(text)
    if not isinstance(fields, dict):
        raise TypeError("not a JSON object")
    return Config(**{name: _tuples(value) for name, value in fields.items()})


def _tuples(value: Any) -> Any:
    """JSON lists back into the tuples Config holds."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def child_main(words: list[str]) -> int:
    """Serve as one child of the supervisor; `words` follow :data:`~picodns.cli.CHILD_FLAG`.

    Returns the exit status: 0 after SIGTERM/SIGINT or when the supervisor is gone (end of
    stdin), 1 when a listener cannot be bound, 2 when `words` are not one encoded Config (each
    error reported as one line on stderr). Raises nothing.
    """
    try:
        if len(words) != 1:
            raise ValueError("expected one word")
        config = decode_config(words[0])
    except (ValueError, TypeError) as err:
        print(
            f"picodns: {CHILD_FLAG}: {quote(str(err))} (for the supervisor only)", file=sys.stderr
        )
        return 2
    setup_logging(config.log_level, config.log_format, pid=True)
    listeners = bind_listeners(config.listen, reuse_port=True)
    if listeners is None:
        return 1
    run_loop(_serve_child(config, listeners))
    return 0


async def _serve_child(config: Config, listeners: list[Listener]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pipe: asyncio.BaseTransport | None = None
    with contextlib.suppress(OSError, ValueError):
        if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
            pipe, _ = await loop.connect_read_pipe(lambda: _EndOfInput(stop.set), sys.stdin)

    def ready(server: Server, resolver: Resolver, metrics: tuple[str, int] | None) -> None:
        sys.stdout.write(f"ready {metrics[1] if metrics else 0}\n")
        sys.stdout.flush()

    try:
        await serve(config, listeners, stop.wait(), ready=ready, child=True, freeze_gc=True)
    finally:
        if pipe is not None:
            pipe.close()


class _EndOfInput(asyncio.Protocol):
    """Calls `gone` when the supervisor's end of the pipe closes."""

    def __init__(self, gone: Callable[[], None]) -> None:
        self.gone = gone

    def data_received(self, data: bytes) -> None:
        pass  # the supervisor writes nothing

    def eof_received(self) -> bool | None:
        self.gone()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone()
