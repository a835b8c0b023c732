"""Config defaults and the value parsers: durations, addresses, resolv.conf, quoting."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picodns import config as config_module
from picodns.config import (
    Config,
    format_hostport,
    parse_duration,
    parse_hostport,
    quote,
    read_resolv_conf,
)

# --- Config -----------------------------------------------------------------------------------


def test_default_config_listens_on_loopback_only() -> None:
    listen = Config().listen
    assert listen == (("127.0.0.1", 53),)
    assert all(ipaddress.ip_address(host).is_loopback for host, _ in listen)


def test_default_config_has_documented_defaults() -> None:
    c = Config()
    assert c.upstreams == ()
    assert (c.workers, c.queue_size, c.cache_size) == (128, 256, 10000)
    assert c.timeout == 5.0
    assert c.log_level == "info"
    assert (c.cache_min_ttl, c.cache_max_ttl) == (0, 86400)
    assert c.tcp_idle_timeout == 10.0
    assert c.tcp_max_connections == 256
    assert c.processes == 1  # one serving process unless -processes asks for more


def test_config_is_frozen() -> None:
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.workers = 1  # type: ignore[misc]


def test_every_config_field_has_a_docstring() -> None:
    tree = ast.parse(inspect.getsource(Config))
    (cls,) = tree.body
    assert isinstance(cls, ast.ClassDef)
    documented: set[str] = set()
    for stmt, after in zip(cls.body, cls.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
            and after.value.value.strip()
        ):
            documented.add(stmt.target.id)
    assert documented == {f.name for f in dataclasses.fields(Config)}


# --- parse_duration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("250us", 0.00025),
        ("250\u00b5s", 0.00025),  # micro sign
        ("250\u03bcs", 0.00025),  # Greek mu
        ("100ns", 1e-7),
        ("1h2m3.5s", 3723.5),
        ("1s500ms", 1.5),
        ("+2s", 2.0),
        ("-1s", -1.0),
        ("0.000000001s", 1e-9),
    ],
)
def test_parse_duration_accepts_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "1.5",
        "5x",
        "s",
        ".s",
        "1S",
        "1 s",
        " 1s",
        "1s ",
        "1ss",
        "1.2.3s",
        "1e3s",
        "-",
        "inf",
        "nan",
        "\u0661s",  # ARABIC-INDIC DIGIT ONE is not a digit here
        "1_000ms",
        "3000000h",  # beyond Go's int64 nanoseconds
        "9" * 40 + "s",
    ],
)
def test_parse_duration_rejects_non_durations_with_the_text_quoted(text: str) -> None:
    with pytest.raises(ValueError, match="duration") as info:
        parse_duration(text)
    assert quote(text) in str(info.value)


def test_parse_duration_names_the_missing_unit_for_a_bare_number() -> None:
    with pytest.raises(ValueError, match=re.escape('missing unit, e.g. "5s"')):
        parse_duration("5")


# --- parse_hostport ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:53", ("127.0.0.1", 53)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("192.0.2.1:5300", ("192.0.2.1", 5300)),
        ("[::1]:53", ("::1", 53)),
        ("[::1]:65535", ("::1", 65535)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        ("2001:db8::1", ("2001:db8::1", 53)),
        ("::1:53", ("::1:53", 53)),  # a bare IPv6 address is read whole
        ("[2001:DB8:0::1]:1", ("2001:db8::1", 1)),  # canonical spelling
        ("[fe80::1%eth0]:53", ("fe80::1%eth0", 53)),
        (":53", ("", 53)),
        (":5353", ("", 5353)),
    ],
)
def test_parse_hostport_reads_every_spelling(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


def test_parse_hostport_uses_the_default_port() -> None:
    assert parse_hostport("10.0.0.1", default_port=5353) == ("10.0.0.1", 5353)
    assert parse_hostport("[::1]", default_port=853) == ("::1", 853)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty address"),
        ("dns.google", "hostname"),
        ("dns.google:53", "hostname"),
        ("localhost", "hostname"),
        ("[dns.google]:53", "hostname"),
        ("256.1.1.1", "not an IP address"),
        ("127.0.0.01", "not an IP address"),
        ("1.1.1.1:", "missing port"),
        ("1.1.1.1:dns", "not a number"),
        ("1.1.1.1:+53", "not a number"),
        ("1.1.1.1: 53", "not a number"),
        ("1.1.1.1:5_3", "not a number"),
        ("1.1.1.1:65536", "out of range"),
        ("1.1.1.1:123456", "out of range"),
        ("1.1.1.1:" + "9" * 5000, "out of range"),
        ("1.1.1.1:0", "out of range (1..65535)"),
        ("[::1]:0", "out of range"),
        ("[::1", 'missing "]"'),
        ("[::1]53", 'expected ":port"'),
        ("[127.0.0.1]:53", "only for IPv6"),
        ("[]:53", "not an IP address"),
        ("1:2:3", "not an IP address"),
    ],
)
def test_parse_hostport_rejects_bad_addresses(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_hostport(text)
    message = str(info.value)
    assert fragment in message
    assert quote(text) in message
    assert "\n" not in message


def test_parse_hostport_takes_port_zero_only_when_allowed() -> None:
    assert parse_hostport("127.0.0.1:0", allow_zero_port=True) == ("127.0.0.1", 0)
    assert parse_hostport("[::1]:0", allow_zero_port=True) == ("::1", 0)
    with pytest.raises(ValueError, match="out of range"):
        parse_hostport("127.0.0.1:0")


def test_parse_hostport_refuses_empty_host_when_asked() -> None:
    with pytest.raises(ValueError, match="needs an IP address"):
        parse_hostport(":53", allow_empty_host=False)
    assert parse_hostport("1.1.1.1:53", allow_empty_host=False) == ("1.1.1.1", 53)


@pytest.mark.parametrize(
    ("host", "port", "spelled"),
    [("1.2.3.4", 53, "1.2.3.4:53"), ("::1", 5300, "[::1]:5300"), ("", 53, ":53")],
)
def test_format_hostport_brackets_ipv6(host: str, port: int, spelled: str) -> None:
    assert format_hostport(host, port) == spelled


@given(address=st.ip_addresses(), port=st.integers(1, 65535))
def test_format_hostport_round_trips_through_parse_hostport(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    host = str(address)
    assert parse_hostport(format_hostport(host, port)) == (host, port)


# --- read_resolv_conf -------------------------------------------------------------------------


def _resolv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "resolv.conf"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_read_resolv_conf_reads_ipv4_and_ipv6_nameservers_in_order(tmp_path: Path) -> None:
    path = _resolv(
        tmp_path,
        "search example.com\nnameserver 192.0.2.53\noptions ndots:2\nnameserver 2001:db8::53\n",
    )
    assert read_resolv_conf(path) == (("192.0.2.53", 53), ("2001:db8::53", 53))


def test_read_resolv_conf_strips_ipv6_zone_ids(tmp_path: Path) -> None:
    path = _resolv(tmp_path, "nameserver fe80::1%eth0\n")
    assert read_resolv_conf(path) == (("fe80::1", 53),)


def test_read_resolv_conf_ignores_comments(tmp_path: Path) -> None:
    path = _resolv(
        tmp_path,
        "# nameserver 192.0.2.1\n"
        "; nameserver 192.0.2.2\n"
        "#nameserver 192.0.2.3\n"
        "nameserver 192.0.2.4 # the real one\n"
        "nameserver 192.0.2.5#inline\n"
        "nameserver 192.0.2.6;inline\n",
    )
    assert read_resolv_conf(path) == (
        ("192.0.2.4", 53),
        ("192.0.2.5", 53),
        ("192.0.2.6", 53),
    )


def test_read_resolv_conf_skips_invalid_entries_and_duplicates(tmp_path: Path) -> None:
    path = _resolv(
        tmp_path,
        "nameserver\nnameserver dns.google\nnameserver 192.0.2.1\nnameserver 192.0.2.1\n"
        "nameservers 192.0.2.9\n",
    )
    assert read_resolv_conf(path) == (("192.0.2.1", 53),)


def test_read_resolv_conf_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_resolv_conf(str(tmp_path / "absent.conf")) == ()


def test_read_resolv_conf_without_nameservers_is_empty(tmp_path: Path) -> None:
    assert read_resolv_conf(_resolv(tmp_path, "search example.com\noptions edns0\n")) == ()


def test_read_resolv_conf_raises_oserror_for_an_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        read_resolv_conf(str(tmp_path))  # a directory


# --- quote ------------------------------------------------------------------------------------


def test_quote_escapes_control_characters_and_quotes() -> None:
    assert quote('a"b\\c\nd\x00e\u2028') == '"a\\"b\\\\c\\nd\\x00e\\u2028"'
    assert quote("250µs") == '"250µs"'


def test_quote_cuts_long_values_short() -> None:
    quoted = quote("x" * 500)
    assert quoted == '"' + "x" * 80 + '..."'


def test_config_module_exports_its_public_names() -> None:
    public = {
        name
        for name, value in vars(config_module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == config_module.__name__
    }
    assert public <= set(config_module.__all__)
