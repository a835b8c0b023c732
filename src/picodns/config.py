"""Configuration: the frozen :class:`Config` and the value parsers the command line uses.

Rules this module keeps:

- Stdlib only, no I/O except :func:`read_resolv_conf`; the parsers take text and return values or
  raise :class:`ValueError` with a one-line message that quotes the offending text.
- Addresses are IP literals only. A DNS forwarder must not need DNS to find its upstreams, and a
  listener given by name would bind whatever the name happens to resolve to today.
- The defaults are safe: listen on loopback only, so PicoDNS is never an open resolver by accident.

Range checks that depend on the flag (1..65536 workers, timeout up to an hour, ...) live in
:mod:`picodns.cli`, which names the flag in its error.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "DNS_PORT",
    "LOG_LEVELS",
    "Config",
    "format_hostport",
    "parse_duration",
    "parse_hostport",
    "quote",
    "read_resolv_conf",
]

DNS_PORT = 53
"""The port a DNS address means when it names none (RFC 1035 4.2)."""

LOG_LEVELS = ("debug", "info", "warn", "error")
"""The accepted values of :attr:`Config.log_level`, most verbose first."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server needs to know to start; built by :func:`picodns.cli.parse_args`."""

    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", DNS_PORT),)
    """(host, port) pairs to serve UDP and TCP on. Host ``""`` means all addresses. The default is
    loopback only: PicoDNS is never an open resolver unless asked to be."""

    upstreams: tuple[tuple[str, int], ...] = ()
    """(IP, port) pairs of the resolvers to forward to, in the order given. Empty means "not given";
    :func:`picodns.cli.parse_args` then fills it from resolv.conf, so a built Config never has it
    empty."""

    workers: int = 128
    """How many workers take queries off the queue and forward them upstream concurrently."""

    queue_size: int = 256
    """How many received queries may wait for a worker; a query arriving at a full queue is
    dropped and counted."""

    cache_size: int = 10000
    """Most entries the LRU cache holds; 0 disables caching."""

    timeout: float = 5.0
    """Seconds a client query may spend on upstreams, failover included, before SERVFAIL."""

    log_level: str = "info"
    """Least severe log level that is written: one of :data:`LOG_LEVELS`."""

    cache_min_ttl: int = 0
    """Seconds; a cached reply is kept at least this long even if its TTL is shorter."""

    cache_max_ttl: int = 86400
    """Seconds; a cached reply is kept at most this long even if its TTL is longer."""

    tcp_idle_timeout: float = 10.0
    """Seconds a client TCP connection may sit without a complete query before it is closed."""

    tcp_max_connections: int = 256
    """Most client TCP connections open at once on each listener; more are refused and counted."""

    metrics_listen: tuple[str, int] | None = None
    """Address of the HTTP endpoint serving /metrics, /health and /ready; None: off."""

    log_format: str = "text"
    """Log line format: "text" or "json" (one JSON object per line)."""

    query_log: bool = False
    """Log one line per query (client, question, rcode, cache or upstream, latency)."""

    processes: int = 1
    """How many serving processes share the listen addresses (SO_REUSEPORT), each with its own
    event loop and cache. 1 serves in this process; more start a supervisor that runs that many
    children, restarts any that dies and sums their metrics."""


# --- durations ------------------------------------------------------------------------------

# Go's time.ParseDuration units. Both the micro sign (U+00B5) and Greek mu (U+03BC) spell micro.
_UNIT_SECONDS: dict[str, Fraction] = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "\u00b5s": Fraction(1, 10**6),
    "\u03bcs": Fraction(1, 10**6),
    "ms": Fraction(1, 10**3),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}
# One "number unit" term. [0-9] rather than \d: only ASCII digits are digits here. Two-letter units
# come first so "ms" is not read as "m" followed by a stray "s".
_DURATION_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
# Go's limit: a duration is an int64 count of nanoseconds (about 292 years).
_MAX_DURATION = Fraction(2**63 - 1, 10**9)
_MAX_DURATION_DIGITS = 20  # whole-number digits beyond this are out of range anyway
_MAX_FRACTION_DIGITS = 30  # fraction digits beyond this are below a nanosecond; dropped


def parse_duration(text: str) -> float:
    """Parse a Go-style duration such as ``500ms``, ``2s``, ``1m30s``, ``1.5h`` or ``250us``.

    Returns the duration in seconds as a float. A duration is an optional sign and one or more
    decimal numbers, each followed by a unit (ns, us or µs, ms, s, m, h); a bare number is
    rejected because it is ambiguous, except ``0``. Raises :class:`ValueError` with a one-line
    message quoting ``text`` when it is not a duration or exceeds Go's range (about 292 years).
    """
    body = text[1:] if text[:1] in ("+", "-") else text
    negative = text[:1] == "-"
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"{quote(text)} is not a duration")
    if re.fullmatch(r"[0-9]+\.?[0-9]*|\.[0-9]+", body):
        raise ValueError(
            f"{quote(text)} is not a duration (missing unit, e.g. {quote(body + 's')})"
        )
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        term = _DURATION_TERM.match(body, pos)
        if term is None or not (term[1] or term[2]):
            raise ValueError(
                f"{quote(text)} is not a duration (a number and a unit: ns, us, ms, s, m, h)"
            )
        whole, frac, unit = term[1], term[2] or "", term[3]
        if len(whole.lstrip("0")) > _MAX_DURATION_DIGITS:
            raise ValueError(f"{quote(text)} is out of range for a duration")
        frac = frac[:_MAX_FRACTION_DIGITS]
        number = int(whole or "0") + Fraction(int(frac or "0"), 10 ** len(frac))
        total += number * _UNIT_SECONDS[unit]
        pos = term.end()
    if total > _MAX_DURATION:
        raise ValueError(f"{quote(text)} is out of range for a duration")
    return float(-total if negative else total)


# --- addresses ------------------------------------------------------------------------------

_PORT_DIGITS = re.compile(r"[0-9]+")


def parse_hostport(
    text: str,
    default_port: int = DNS_PORT,
    *,
    allow_zero_port: bool = False,
    allow_empty_host: bool = True,
) -> tuple[str, int]:
    """Parse one address: ``IP:port``, ``IP``, ``[IPv6]:port``, ``[IPv6]``, ``IPv6`` or ``:port``.

    Returns ``(host, port)`` with the host in its canonical spelling (``"::1"`` for
    ``"0:0::1"``), or ``""`` for ``:port``, which means all addresses. A missing port is
    ``default_port``. A bare IPv6 address is read whole, so ``::1:53`` is the address ``::1:53``
    on ``default_port``; bracket it to give a port. An IPv6 zone (``fe80::1%eth0``) is kept.
    Raises :class:`ValueError` with a one-line message quoting ``text`` when the host is not an
    IP literal (hostnames are refused: PicoDNS must not need DNS to find its own addresses), when
    the port is not in 1..65535 (0..65535 with ``allow_zero_port``), or when the host is empty and
    ``allow_empty_host`` is false.
    """
    if not text:
        raise ValueError('"": empty address')
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f'{quote(text)}: missing "]" after the IPv6 address')
        if rest and not rest.startswith(":"):
            raise ValueError(f'{quote(text)}: expected ":port" after "]"')
        host = _ip_literal(text, inside, want_ipv6=True)
        port = _port(text, rest[1:], allow_zero_port) if rest else default_port
    elif text.count(":") >= 2:
        host = _ip_literal(text, text, want_ipv6=True)
        port = default_port
    else:
        inside, colon, port_text = text.rpartition(":")
        if not colon:
            inside, port_text = text, ""
        host = _ip_literal(text, inside, want_ipv6=False) if inside else ""
        port = _port(text, port_text, allow_zero_port) if colon else default_port
    if not host and not allow_empty_host:
        raise ValueError(f"{quote(text)}: needs an IP address before the port")
    return host, port


def format_hostport(host: str, port: int) -> str:
    """Spell an address the way :func:`parse_hostport` reads it.

    Returns ``"IP:port"``, ``"[IPv6]:port"``, or ``":port"`` for the empty host. Raises nothing.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ip_literal(text: str, host: str, *, want_ipv6: bool) -> str:
    """Return ``host`` canonicalised, or raise ValueError naming ``text``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        what = quote(text) if host == text else f"{quote(text)}: {quote(host)}"
        if re.search(r"[A-Za-z]", host) and ":" not in host:
            raise ValueError(
                f"{what} is a hostname; give an IP address"
                " (PicoDNS does not use DNS to find its own addresses)"
            ) from None
        raise ValueError(f"{what} is not an IP address") from None
    if want_ipv6 and address.version != 6:
        raise ValueError(f"{quote(text)}: brackets are only for IPv6 addresses")
    return str(address)


def _port(text: str, port_text: str, allow_zero: bool) -> int:
    """Return the port in ``port_text``, or raise ValueError naming ``text``."""
    lowest = 0 if allow_zero else 1
    if not port_text:
        raise ValueError(f"{quote(text)}: missing port after ':'")
    # int() would also take "+53", " 53", "5_3" and non-ASCII digits; a port is plain digits.
    if not _PORT_DIGITS.fullmatch(port_text):
        raise ValueError(f"{quote(text)}: port {quote(port_text)} is not a number")
    if len(port_text) > 5 or not lowest <= int(port_text) <= 65535:
        raise ValueError(f"{quote(text)}: port {port_text} is out of range ({lowest}..65535)")
    return int(port_text)


def read_resolv_conf(path: str = "/etc/resolv.conf") -> tuple[tuple[str, int], ...]:
    """Read the ``nameserver`` lines of a resolv.conf file, in file order.

    Returns ``(IP, 53)`` pairs, without duplicates, with any IPv6 zone (``%eth0``) removed; an
    empty tuple when the file does not exist or names no nameserver. Lines starting with ``#`` or
    ``;`` are comments, and a comment or other text after an address is ignored; an entry that
    is not an IP address is skipped, as the C resolver skips it. Raises :class:`OSError` when the
    file exists but cannot be read.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return ()
    found: list[tuple[str, int]] = []
    for line in lines:
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver":
            continue  # also skips comment lines: their first word starts with # or ;
        # Like the C resolver, the address ends at a comment character; the zone is dropped.
        spelled = re.split(r"[#;%]", words[1], maxsplit=1)[0]
        try:
            address = ipaddress.ip_address(spelled)
        except ValueError:
            continue
        entry = (str(address), DNS_PORT)
        if entry not in found:
            found.append(entry)
    return tuple(found)


# --- messages -------------------------------------------------------------------------------

_MAX_QUOTED = 80  # characters of a value shown in an error before it is cut short


def quote(text: str) -> str:
    """Quote a user-supplied value for an error message.

    Returns ``text`` in double quotes with backslashes, quotes and every non-printable character
    escaped, cut short after 80 characters, so an error about it stays one readable line.
    Raises nothing.
    """
    cut = len(text) > _MAX_QUOTED
    parts: list[str] = []
    for char in text[:_MAX_QUOTED]:
        if char in '"\\':
            parts.append("\\" + char)
        elif char.isprintable():
            parts.append(char)
        else:
            parts.append(char.encode("unicode_escape").decode("ascii"))
    return '"' + "".join(parts) + ('..."' if cut else '"')
