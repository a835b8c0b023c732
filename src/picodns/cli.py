"""The command line: flags in, a validated :class:`~picodns.config.Config` out, then run.

Rules this module keeps:

- Process edges are parameters: ``main(argv) -> int`` and ``parse_args(argv, resolv_conf)``; no
  module-level state, so tests call them directly.
- Flags look like Go's: one or two dashes, ``-flag value`` or ``-flag=value``, no abbreviations,
  and each flag at most once.
- A user mistake is one line on stderr naming the flag, exit status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from picodns import __version__
from picodns import resolver as resolver_module
from picodns.cache import Cache
from picodns.config import (
    LOG_LEVELS,
    Config,
    format_hostport,
    parse_duration,
    parse_hostport,
    quote,
    read_resolv_conf,
)
from picodns.errors import ConfigError, PicoDNSError, WireError
from picodns.exposition import Collector, MetricsEndpoint, drop_counts, render
from picodns.metrics import QTYPE_NAMES, RCODE_NAMES
from picodns.resolver import Resolver
from picodns.server import Listener, Server, bind
from picodns.upstream import Upstream, UpstreamClient
from picodns.wire import HEADER_SIZE, name_to_text, scan_qname

__all__ = [
    "CHILD_FLAG",
    "InfoRequested",
    "bind_listeners",
    "build_kind",
    "main",
    "parse_args",
    "run",
    "run_loop",
    "setup_logging",
    "usage",
]

_log = logging.getLogger("picodns")

_T = TypeVar("_T")

SHUTDOWN_GRACE = 2.0  # seconds in-flight queries get to finish after SIGTERM
DROP_LOG_INTERVAL = 10.0  # seconds between "dropped ..." warning lines (only when any)
_MAX_TTL = 2**31 - 1  # RFC 2181 8: a TTL is an unsigned 31-bit number of seconds
_MAX_TIMEOUT = (3600.0, "1h")  # seconds and spelling; a client gave up long before an hour
MAX_PROCESSES = 64  # serving processes; far more than cores on any machine this is meant for

CHILD_FLAG = "--picodns-supervised-child"
"""The hidden first word that makes ``main`` run one child of :mod:`picodns.supervisor`; the
word after it is the child's configuration. Not a flag: it is never in the usage text, and it
counts only as the very first word."""

# Every flag that takes a value: (name, metavar, meaning). The usage text and the parser both
# come from this table, so a flag cannot be accepted without being documented.
_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("listen", "ADDRS", "comma-separated addresses to serve UDP and TCP on (:PORT = all)"),
    ("upstreams", "ADDRS", "comma-separated upstream resolvers, IP[:PORT] or [IPv6]:PORT"),
    ("workers", "N", "cache misses resolved at once (1..65536)"),
    ("queue-size", "N", "queries that may wait for a worker before drops (1..1000000)"),
    ("cache-size", "N", "most cached replies, 0 disables caching (0..10000000)"),
    ("timeout", "DURATION", "time for upstreams to answer a query, failover included (<= 1h)"),
    ("log-level", "LEVEL", "least severe log level written: debug, info, warn, error"),
    ("cache-min-ttl", "SECONDS", "keep cached replies at least this long"),
    ("cache-max-ttl", "SECONDS", "keep cached replies at most this long"),
    ("tcp-idle-timeout", "DURATION", "close a client TCP connection idle this long"),
    ("tcp-max-connections", "N", "most client TCP connections per listener (1..65536)"),
    ("metrics-listen", "ADDR", "serve /metrics, /health and /ready over HTTP here (off if unset)"),
    ("log-format", "FORMAT", "log line format: text or json"),
    ("query-log", "", "log one line per query (a switch; -query-log=false turns it off)"),
    ("processes", "N", "serving processes sharing the listen addresses (1..64; SO_REUSEPORT)"),
)
_BOOL_FLAGS = frozenset({"query-log"})
_VALUE_FLAGS = frozenset(name for name, _, _ in _FLAGS)
_HELP_FLAGS = frozenset({"h", "help"})
_INFO_FLAGS = _HELP_FLAGS | {"version"}


class InfoRequested(Exception):
    """``-h`` or ``-version`` was given: print :attr:`text` to stdout and exit 0."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _ArgumentError(ConfigError):
    """A word on the command line that is not a flag at all, so there is no flag to name."""

    def __init__(self, msg: str) -> None:
        PicoDNSError.__init__(self, msg)
        self.flag = ""


def main(argv: list[str] | None = None) -> int:
    """Run PicoDNS with the command-line words ``argv`` (default: ``sys.argv[1:]``).

    Returns the process exit status: 0 after ``-h``, ``-version`` or a clean shutdown, 2 after a
    bad flag or value (reported as one line on stderr). Raises nothing for user mistakes.
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == [CHILD_FLAG]:
        # Imported here, not at the top: the supervisor builds on this module.
        from picodns.supervisor import child_main

        return child_main(args[1:])
    try:
        config = parse_args(args)
    except InfoRequested as info:
        print(info.text)
        return 0
    except ConfigError as err:
        # Values are quoted and escaped already; joining lines keeps the one-line promise anyway.
        print("picodns: " + " ".join(str(err).splitlines()), file=sys.stderr)
        return 2
    return run(config)


def run(config: Config) -> int:
    """Serve with ``config`` until SIGTERM or SIGINT, then drain and stop.

    Returns the exit status: 0 after a clean shutdown, 1 when a listener cannot be bound
    (reported as one line on stderr). Raises nothing for operator mistakes. With
    ``config.processes`` above 1 this process becomes the supervisor of that many serving
    children instead (:func:`picodns.supervisor.supervise`) and serves no DNS itself.
    """
    if config.processes > 1:
        # Imported here, not at the top: the supervisor builds on this module.
        from picodns.supervisor import supervise

        return supervise(config)
    setup_logging(config.log_level, config.log_format)
    listeners = bind_listeners(config.listen)
    if listeners is None:
        return 1
    try:
        run_loop(serve(config, listeners, freeze_gc=True))
    except ConfigError as err:  # found only once serving starts, e.g. -metrics-listen in use
        print(f"picodns: {err}", file=sys.stderr)
        return 1
    return 0


def build_kind() -> str:
    """ "compiled" when the serving core (wire ... server) was compiled by mypyc at install
    time, "pure" when it runs as Python source (PICODNS_PURE=1, see setup.py). Shown by
    ``-version``; the behaviour is the same, only the speed differs."""
    return "pure" if resolver_module.__file__.endswith(".py") else "compiled"


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """gc.callbacks hook: after a young collection, freeze what it left alive."""
    if phase == "stop" and info["generation"] == 0:
        gc.freeze()


def bind_listeners(
    listen: tuple[tuple[str, int], ...], reuse_port: bool = False
) -> list[Listener] | None:
    """Bind UDP and TCP on every address in `listen` (SO_REUSEPORT when `reuse_port`).

    Returns the listeners, or None when an address cannot be bound: then the one-line error
    naming it is printed on stderr and the listeners bound before it are closed. Raises nothing.
    """
    listeners: list[Listener] = []
    for host, port in listen:
        try:
            listeners.append(bind(host, port, reuse_port=reuse_port))
        except OSError as err:
            where = format_hostport(host, port)
            print(f"picodns: -listen {where}: cannot bind: {err.strerror or err}", file=sys.stderr)
            for listener in listeners:
                listener.udp.close()
                listener.tcp.close()
            return None
    return listeners


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to completion on a new uvloop event loop, or asyncio's when uvloop is absent."""
    try:
        import uvloop
    except ImportError:  # the plain asyncio loop works, only slower
        asyncio.run(main)
    else:
        uvloop.run(main)


def build(config: Config) -> tuple[Server, Resolver]:
    """Wire the objects for `config`: upstreams, cache, resolver, server. No I/O yet."""
    upstreams = [Upstream(host, port) for host, port in config.upstreams]
    client = UpstreamClient(upstreams, config.timeout)
    cache = Cache(config.cache_size, config.cache_min_ttl, config.cache_max_ttl)
    resolver = Resolver(cache, client)
    server = Server(
        resolver,
        workers=config.workers,
        queue_size=config.queue_size,
        max_wait=config.timeout,
        idle_timeout=config.tcp_idle_timeout,
        max_connections=config.tcp_max_connections,
        query_log=log_query if config.query_log else None,
    )
    return server, resolver


async def serve(
    config: Config,
    listeners: list[Listener],
    shutdown: Awaitable[object] | None = None,
    ready: Callable[[Server, Resolver, tuple[str, int] | None], None] | None = None,
    *,
    child: bool = False,
    freeze_gc: bool = False,
) -> None:
    """Build the resolver and serve `listeners` until `shutdown` (default: SIGTERM/SIGINT).

    The composition root: configuration in, objects wired together, run until told to stop.
    `ready`, if given, is called once serving, with the objects and the metrics address.
    `child` marks one process of several under a supervisor: its startup line then says
    "child serving on", so the supervisor's own line is the only "listening on" line.

    `freeze_gc` (what a serving process wants; in-process tests leave it off) keeps the cyclic
    garbage collector off the cache. Cached entries live long and every miss adds one; the
    collector would keep rescanning them: 12% of a cache miss's CPU, and pauses of many ms once
    the cache is large (measured, BENCHMARKS.md). So whatever survives a collection of the
    youngest generation is frozen at once (:func:`gc.freeze`, O(1)): the collector only ever
    walks the last few hundred allocations. Frozen objects are freed by reference counting like
    any other, and that is how the serving paths' objects die: on uvloop they make no reference
    cycles (tests/e2e/test_server.py checks), so nothing frozen waits for the collector. On
    uvloop only: asyncio's own socket transports hold a reference cycle each.
    """
    loop = asyncio.get_running_loop()
    server, resolver = build(config)
    upstreams = resolver.client.upstreams
    loop_name = type(loop).__module__.split(".")[0]
    endpoint: MetricsEndpoint | None = None
    metrics_at: tuple[str, int] | None = None
    if config.metrics_listen is not None:
        collector = Collector(server, resolver, loop_name)

        async def metrics() -> bytes:
            return render(collector)

        async def any_upstream_healthy() -> bool:
            return any(u.healthy for u in upstreams)

        endpoint = MetricsEndpoint(metrics, any_upstream_healthy)
        try:
            metrics_at = await endpoint.start(*config.metrics_listen)
        except OSError as err:
            where = format_hostport(*config.metrics_listen)
            raise ConfigError("metrics-listen", f"{where}: cannot bind: {err.strerror}") from None
    if shutdown is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        shutdown = stop.wait()
    _log.info(
        "picodns %s %s %s (udp+tcp); upstreams %s; workers=%d queue=%d cache=%d "
        "timeout=%gs tcp-max-connections=%d loop=%s metrics=%s",
        __version__,
        "child serving on" if child else "listening on",
        ",".join(listener.address for listener in listeners),
        ",".join(u.address for u in upstreams),
        config.workers,
        config.queue_size,
        config.cache_size,
        config.timeout,
        config.tcp_max_connections,
        loop_name,
        format_hostport(*metrics_at) if metrics_at else "off",
    )
    watch = asyncio.ensure_future(_warn_about_drops(server, resolver))
    freezing = freeze_gc and loop_name == "uvloop"  # see the docstring
    if freezing:
        gc.freeze()  # what startup made
        gc.callbacks.append(_freeze_survivors)
    try:
        await server.start(listeners)
        if ready is not None:
            ready(server, resolver, metrics_at)
        await shutdown
    finally:
        watch.cancel()
        if freezing:
            gc.callbacks.remove(_freeze_survivors)
        await server.stop(min(config.timeout, SHUTDOWN_GRACE))
        if endpoint is not None:
            await endpoint.stop()
        resolver.client.close()
    _log.info("picodns stopped")


async def _warn_about_drops(server: Server, resolver: Resolver) -> None:
    """Log what was dropped, summed over each interval: never a line per dropped packet."""
    last = drop_counts(server, resolver)
    while True:
        await asyncio.sleep(DROP_LOG_INTERVAL)
        now = drop_counts(server, resolver)
        delta = {reason: now[reason] - last[reason] for reason in now}
        last = now
        if any(delta.values()):
            summary = ", ".join(f"{reason} {n}" for reason, n in delta.items() if n)
            _log.warning("dropped in the last %gs: %s", DROP_LOG_INTERVAL, summary)


_query_log = logging.getLogger("picodns.query")


def log_query(
    transport: str, client: Any, query: bytes, reply: bytes | None, source: str, took: float
) -> None:
    """The query log line: client, question, rcode, cache or upstream, latency."""
    try:
        qend = scan_qname(query, HEADER_SIZE)
        qname = name_to_text(query[HEADER_SIZE:qend])
        qtype = int.from_bytes(query[qend : qend + 2], "big")
        question = f"{qname} {QTYPE_NAMES.get(qtype, f'TYPE{qtype}')}"
    except (WireError, IndexError):
        question = "(unreadable question)"
    rcode = RCODE_NAMES.get(reply[3] & 0xF, "other") if reply and len(reply) > 3 else "dropped"
    host, port = (client[0], client[1]) if isinstance(client, tuple) else (client, 0)
    _query_log.info(
        "query %s %s %s %s %s %.3fms",
        transport,
        format_hostport(str(host), int(port)),
        question,
        rcode,
        source,
        took * 1000,
    )


def parse_args(argv: list[str], resolv_conf: str = "/etc/resolv.conf") -> Config:
    """Build a validated :class:`Config` from the command-line words ``argv`` (no program name).

    Returns the Config; when ``-upstreams`` is not given its upstreams are the nameservers in the
    file ``resolv_conf``. Raises :class:`InfoRequested` for ``-h``/``-help``/``-version`` (before
    any value is checked), and :class:`ConfigError` naming the flag for an unknown, repeated or
    valueless flag, a bad value, or no upstreams at all.
    """
    raw = _scan(argv)
    d = Config()
    listen = _get(raw, "listen", _parse_listen, d.listen)
    workers = _get(raw, "workers", _integer(1, 65536), d.workers)
    queue_size = _get(raw, "queue-size", _integer(1, 1_000_000), d.queue_size)
    cache_size = _get(raw, "cache-size", _integer(0, 10_000_000), d.cache_size)
    timeout = _get(raw, "timeout", _positive_duration(_MAX_TIMEOUT), d.timeout)
    log_level = _get(raw, "log-level", _parse_log_level, d.log_level)
    cache_min_ttl = _get(raw, "cache-min-ttl", _integer(0, _MAX_TTL), d.cache_min_ttl)
    cache_max_ttl = _get(raw, "cache-max-ttl", _integer(0, _MAX_TTL), d.cache_max_ttl)
    tcp_idle = _get(raw, "tcp-idle-timeout", _positive_duration(None), d.tcp_idle_timeout)
    tcp_max = _get(raw, "tcp-max-connections", _integer(1, 65536), d.tcp_max_connections)
    metrics_listen = _get(raw, "metrics-listen", _parse_metrics_listen, d.metrics_listen)
    log_format = _get(raw, "log-format", _parse_log_format, d.log_format)
    query_log = _get(raw, "query-log", _parse_bool, d.query_log)
    processes = _get(raw, "processes", _integer(1, MAX_PROCESSES), d.processes)
    if processes > 1 and not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("processes", f"{processes} needs SO_REUSEPORT, which this system lacks")
    if cache_min_ttl > cache_max_ttl:
        raise ConfigError(
            "cache-min-ttl", f"{cache_min_ttl} is greater than -cache-max-ttl {cache_max_ttl}"
        )
    upstreams = _get(raw, "upstreams", _parse_upstreams, d.upstreams)
    if not upstreams:
        upstreams = _upstreams_from_resolv_conf(resolv_conf)
    _check_no_forwarding_loop(listen, upstreams)
    return Config(
        listen=listen,
        upstreams=upstreams,
        workers=workers,
        queue_size=queue_size,
        cache_size=cache_size,
        timeout=timeout,
        log_level=log_level,
        cache_min_ttl=cache_min_ttl,
        cache_max_ttl=cache_max_ttl,
        tcp_idle_timeout=tcp_idle,
        tcp_max_connections=tcp_max,
        metrics_listen=metrics_listen,
        log_format=log_format,
        query_log=query_log,
        processes=processes,
    )


def usage() -> str:
    """Return the ``-h`` text: every flag with its value, meaning and default. Raises nothing."""
    d = Config()
    defaults = {
        "listen": ",".join(format_hostport(host, port) for host, port in d.listen),
        "upstreams": "the nameservers in /etc/resolv.conf",
        "workers": str(d.workers),
        "queue-size": str(d.queue_size),
        "cache-size": str(d.cache_size),
        "timeout": f"{d.timeout:g}s",
        "log-level": d.log_level,
        "cache-min-ttl": str(d.cache_min_ttl),
        "cache-max-ttl": str(d.cache_max_ttl),
        "tcp-idle-timeout": f"{d.tcp_idle_timeout:g}s",
        "tcp-max-connections": str(d.tcp_max_connections),
        "metrics-listen": "off",
        "log-format": d.log_format,
        "query-log": "off",
        "processes": str(d.processes),
    }
    lines = [
        "usage: picodns [flags]",
        "",
        "PicoDNS is a caching DNS forwarder. Flags take one or two dashes, as -flag VALUE or",
        "-flag=VALUE. Durations look like 500ms, 5s, 1m30s. Addresses are IP literals only.",
        "",
    ]
    for name, metavar, meaning in _FLAGS:
        lines.append(f"  -{name} {metavar}  (default {defaults[name]})")
        lines.append(f"        {meaning}")
    lines.append("  -version")
    lines.append("        print the version and exit")
    lines.append("  -h, -help")
    lines.append("        print this help and exit")
    return "\n".join(lines)


# --- scanning -------------------------------------------------------------------------------


def _flag_name(word: str) -> str | None:
    """Return the flag name in ``word`` (``--a=b`` -> ``a``), or None if it is not flag-shaped."""
    if not word.startswith("-") or word in ("-", "--"):
        return None
    body = word[2:] if word.startswith("--") else word[1:]
    return body.partition("=")[0]


def _scan(argv: list[str]) -> dict[str, str]:
    """Split ``argv`` into {flag name: value text}, checking flag names but no values."""
    raw: dict[str, str] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":  # Go's end of flags; PicoDNS takes no other arguments
            if i < len(argv):
                raise _ArgumentError(f"{quote(argv[i])}: unexpected argument (see -h)")
            break
        name = _flag_name(word)
        if name is None:
            raise _ArgumentError(f"{quote(word)}: unexpected argument (see -h)")
        if not name or name.startswith("-") or not name.isprintable():
            raise _ArgumentError(f"{quote(word)}: bad flag syntax (see -h)")
        has_value = "=" in word
        if name in _INFO_FLAGS:
            if has_value:
                raise ConfigError(name, "takes no value")
            text = usage() if name in _HELP_FLAGS else f"picodns {__version__} ({build_kind()})"
            raise InfoRequested(text)
        if name not in _VALUE_FLAGS:
            raise ConfigError(name, "unknown flag (see -h)")
        if has_value:
            value = word.partition("=")[2]
        elif name in _BOOL_FLAGS:
            value = "true"  # a switch: present means on (Go's flag package does the same)
        elif i < len(argv) and _flag_name(argv[i]) not in _VALUE_FLAGS | _INFO_FLAGS:
            value = argv[i]  # may start with "-": "-workers -1" is a bad number, not a flag
            i += 1
        else:
            raise ConfigError(name, "needs a value")
        if name in raw:
            raise ConfigError(name, "given more than once (give a comma-separated list)")
        raw[name] = value
    return raw


def _get(raw: dict[str, str], flag: str, parse: Callable[[str], _T], default: _T) -> _T:
    """Return ``parse(raw[flag])``, or ``default`` if the flag was not given."""
    if flag not in raw:
        return default
    try:
        return parse(raw[flag])
    except ValueError as err:
        raise ConfigError(flag, str(err)) from None


# --- value parsers: each takes the flag's text and raises ValueError with a one-line message ---


def _integer(lowest: int, highest: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        digits = text[1:] if text[:1] in ("+", "-") else text
        # isdecimal() alone would accept non-ASCII digits; int() would accept "1_000" and spaces.
        if not (digits.isascii() and digits.isdecimal()):
            raise ValueError(f"{quote(text)} is not an integer")
        if len(digits) > 20:
            raise ValueError(f"{quote(text)} is out of range ({lowest}..{highest})")
        number = int(text)
        if not lowest <= number <= highest:
            raise ValueError(f"{number} is out of range ({lowest}..{highest})")
        return number

    return parse


def _positive_duration(longest: tuple[float, str] | None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        seconds = parse_duration(text)
        if seconds <= 0:
            raise ValueError(f"{quote(text)} must be longer than 0")
        if longest is not None and seconds > longest[0]:
            raise ValueError(f"{quote(text)} is longer than {longest[1]}")
        return seconds

    return parse


def _parse_metrics_listen(text: str) -> tuple[str, int] | None:
    return parse_hostport(text.strip(), 9153, allow_zero_port=True)


def _parse_log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError(f"{quote(text)} is not a log format (text, json)")
    return text


def _parse_bool(text: str) -> bool:
    value = {"true": True, "1": True, "false": False, "0": False}.get(text.lower())
    if value is None:
        raise ValueError(f"{quote(text)} is not true or false")
    return value


def _parse_log_level(text: str) -> str:
    level = text.lower()
    level = "warn" if level == "warning" else level
    if level not in LOG_LEVELS:
        raise ValueError(f"{quote(text)} is not a log level ({', '.join(LOG_LEVELS)})")
    return level


def _address_list(text: str, **keywords: bool) -> tuple[tuple[str, int], ...]:
    """Parse a comma-separated address list, rejecting empty items and duplicates."""
    if not text.strip():
        raise ValueError("needs at least one address")
    addresses: list[tuple[str, int]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"{quote(text)}: empty address in the list")
        address = parse_hostport(item, **keywords)
        if address in addresses:
            raise ValueError(f"{format_hostport(*address)} is listed twice")
        addresses.append(address)
    return tuple(addresses)


def _parse_listen(text: str) -> tuple[tuple[str, int], ...]:
    # Port 0 lets the OS choose a free port, which tests and supervisors rely on.
    return _address_list(text, allow_zero_port=True)


def _parse_upstreams(text: str) -> tuple[tuple[str, int], ...]:
    upstreams = _address_list(text, allow_empty_host=False)
    for host, port in upstreams:
        if ipaddress.ip_address(host).is_unspecified:
            raise ValueError(f"{format_hostport(host, port)} is not a host to send queries to")
    return upstreams


def _upstreams_from_resolv_conf(path: str) -> tuple[tuple[str, int], ...]:
    try:
        upstreams = read_resolv_conf(path)
    except OSError as err:
        raise ConfigError(
            "upstreams", f"not given, and {quote(path)} cannot be read ({err.strerror})"
        ) from None
    if not upstreams:
        raise ConfigError(
            "upstreams", f"not given, and {quote(path)} names no nameserver; give -upstreams IP"
        )
    return upstreams


def _check_no_forwarding_loop(
    listen: tuple[tuple[str, int], ...], upstreams: tuple[tuple[str, int], ...]
) -> None:
    """Refuse an upstream that is one of our own listeners: every query would circle forever.

    This happens for real when resolv.conf points at 127.0.0.1 because PicoDNS serves there.
    Only loopback and exact matches are caught; the machine's other addresses are not known here.
    """
    for up_host, up_port in upstreams:
        up_ip = ipaddress.ip_address(up_host)
        for host, port in listen:
            if port != up_port:
                continue
            wildcard_v4 = host == "0.0.0.0" and up_ip.version == 4
            wildcard_any = host in ("", "::")
            if up_host == host or (up_ip.is_loopback and (wildcard_v4 or wildcard_any)):
                raise ConfigError(
                    "upstreams",
                    f"{format_hostport(up_host, up_port)} is also a listen address;"
                    " PicoDNS would forward queries to itself",
                )


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def setup_logging(level: str, fmt: str = "text", pid: bool = False) -> None:
    """Send picodns's log lines to stderr at `level` in format `fmt` ("text" or "json").

    With `pid`, each line carries the process ID (a child of the supervisor shares stderr with
    its siblings). Raises KeyError for a level not in :data:`~picodns.config.LOG_LEVELS`.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter(pid))
    elif pid:
        text = "%(asctime)s %(levelname)s [pid %(process)d] %(message)s"
        handler.setFormatter(logging.Formatter(text))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("picodns")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(_LEVELS[level])


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and pid, when asked)."""

    def __init__(self, pid: bool = False) -> None:
        super().__init__()
        self.pid = pid

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.pid:
            out["pid"] = record.process
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)
