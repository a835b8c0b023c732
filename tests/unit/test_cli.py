"""The command line: every flag's good and bad values, flag syntax, -h/-version, resolv.conf.

No test reads the real /etc/resolv.conf: each passes a tmp_path file, or gives -upstreams.
Nothing here sends network traffic.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from picodns import __version__, cli
from picodns.cli import InfoRequested, main, parse_args, usage
from picodns.config import Config
from picodns.errors import ConfigError
from tests.support.processes import run_picodns

UPSTREAM = ["-upstreams", "127.0.0.1:5300"]


@pytest.fixture
def no_resolv_conf(tmp_path: Path) -> str:
    return str(tmp_path / "absent-resolv.conf")


def parse(*argv: str, resolv_conf: str) -> Config:
    """parse_args with a test upstream unless the test gives -upstreams itself."""
    words = list(argv)
    if not any(w.lstrip("-").partition("=")[0] == "upstreams" for w in words):
        words += UPSTREAM
    return parse_args(words, resolv_conf=resolv_conf)


def config_error(*argv: str, resolv_conf: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(*argv, resolv_conf=resolv_conf)
    return info.value


# --- good values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "field", "expected"),
    [
        ("listen", "127.0.0.1:5353", "listen", (("127.0.0.1", 5353),)),
        ("listen", ":53", "listen", (("", 53),)),
        ("listen", "[::1]:53,127.0.0.1", "listen", (("::1", 53), ("127.0.0.1", 53))),
        ("listen", "127.0.0.1:53, [::1]:53", "listen", (("127.0.0.1", 53), ("::1", 53))),
        ("listen", "127.0.0.1:0", "listen", (("127.0.0.1", 0),)),
        ("upstreams", "192.0.2.1", "upstreams", (("192.0.2.1", 53),)),
        ("upstreams", "192.0.2.1:5300,[2001:db8::1]:53", "upstreams",
         (("192.0.2.1", 5300), ("2001:db8::1", 53))),
        ("upstreams", "2001:db8::1", "upstreams", (("2001:db8::1", 53),)),
        ("workers", "1", "workers", 1),
        ("workers", "65536", "workers", 65536),
        ("workers", "+8", "workers", 8),
        ("queue-size", "1", "queue_size", 1),
        ("queue-size", "1000000", "queue_size", 1_000_000),
        ("cache-size", "0", "cache_size", 0),
        ("cache-size", "10000000", "cache_size", 10_000_000),
        ("timeout", "500ms", "timeout", 0.5),
        ("timeout", "1h", "timeout", 3600.0),
        ("timeout", "1m30s", "timeout", 90.0),
        ("log-level", "debug", "log_level", "debug"),
        ("log-level", "info", "log_level", "info"),
        ("log-level", "warn", "log_level", "warn"),
        ("log-level", "warning", "log_level", "warn"),
        ("log-level", "ERROR", "log_level", "error"),
        ("cache-min-ttl", "0", "cache_min_ttl", 0),
        ("cache-min-ttl", "60", "cache_min_ttl", 60),
        ("cache-max-ttl", "0", "cache_max_ttl", 0),  # min defaults to 0, so 0 is allowed
        ("cache-max-ttl", str(2**31 - 1), "cache_max_ttl", 2**31 - 1),
        ("tcp-idle-timeout", "250ms", "tcp_idle_timeout", 0.25),
        ("tcp-idle-timeout", "2h", "tcp_idle_timeout", 7200.0),
        ("tcp-max-connections", "1", "tcp_max_connections", 1),
        ("tcp-max-connections", "65536", "tcp_max_connections", 65536),
        ("processes", "1", "processes", 1),
        ("processes", "2", "processes", 2),
        ("processes", "64", "processes", 64),
        ("processes", "+4", "processes", 4),
    ],
)  # fmt: skip
def test_each_flag_sets_its_field(
    flag: str, value: str, field: str, expected: object, no_resolv_conf: str
) -> None:
    config = parse(f"-{flag}", value, resolv_conf=no_resolv_conf)
    assert getattr(config, field) == expected
    changed = {f.name for f in dataclasses.fields(Config)} - {field, "upstreams"}
    default = Config()
    assert all(getattr(config, name) == getattr(default, name) for name in changed)


def test_no_flags_give_the_defaults_plus_upstreams(no_resolv_conf: str) -> None:
    config = parse(resolv_conf=no_resolv_conf)
    assert config == dataclasses.replace(Config(), upstreams=(("127.0.0.1", 5300),))


def test_every_config_field_has_a_flag_in_the_usage_text() -> None:
    text = usage()
    for field in dataclasses.fields(Config):
        assert f"  -{field.name.replace('_', '-')} " in text


# --- bad values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [
        ("listen", "", "needs at least one address"),
        ("listen", "localhost:53", "hostname"),
        ("listen", "127.0.0.1:53,127.0.0.1:53", "127.0.0.1:53 is listed twice"),
        ("listen", "[::1]:53,[0::1]:53", "[::1]:53 is listed twice"),
        ("listen", "127.0.0.1:53,", "empty address"),
        ("listen", "127.0.0.1:65536", "out of range"),
        ("upstreams", "", "needs at least one address"),
        ("upstreams", "dns.google", "hostname"),
        ("upstreams", ":53", "needs an IP address"),
        ("upstreams", "0.0.0.0", "not a host to send queries to"),
        ("upstreams", "[::]:53", "not a host to send queries to"),
        ("upstreams", "192.0.2.1:0", "out of range"),
        ("upstreams", "192.0.2.1,192.0.2.1:53", "listed twice"),
        ("upstreams", "192.0.2.1,,192.0.2.2", "empty address"),
        ("workers", "0", "0 is out of range (1..65536)"),
        ("workers", "65537", "out of range"),
        ("workers", "-1", "out of range"),
        ("workers", "many", '"many" is not an integer'),
        ("workers", "1_000", "not an integer"),
        ("workers", "1.5", "not an integer"),
        ("workers", " 8", "not an integer"),
        ("workers", "\u0668", "not an integer"),  # ARABIC-INDIC DIGIT EIGHT
        ("workers", "9" * 5000, "out of range"),
        ("queue-size", "0", "out of range (1..1000000)"),
        ("queue-size", "1000001", "out of range"),
        ("cache-size", "-1", "out of range (0..10000000)"),
        ("cache-size", "10000001", "out of range"),
        ("timeout", "5x", '"5x" is not a duration'),
        ("timeout", "5", "missing unit"),
        ("timeout", "0", "must be longer than 0"),
        ("timeout", "0s", "must be longer than 0"),
        ("timeout", "-1s", "must be longer than 0"),
        ("timeout", "1h1ns", "longer than 1h"),
        ("log-level", "verbose", '"verbose" is not a log level'),
        ("log-level", "", "not a log level"),
        ("cache-min-ttl", "-1", "out of range"),
        ("cache-min-ttl", str(2**31), "out of range (0..2147483647)"),
        ("cache-max-ttl", "-1", "out of range"),
        ("cache-max-ttl", str(2**31), "out of range"),
        ("cache-max-ttl", "1d", "not an integer"),
        ("tcp-idle-timeout", "0", "must be longer than 0"),
        ("tcp-idle-timeout", "10", "missing unit"),
        ("tcp-max-connections", "0", "out of range (1..65536)"),
        ("tcp-max-connections", "65537", "out of range"),
        ("processes", "0", "0 is out of range (1..64)"),
        ("processes", "65", "65 is out of range (1..64)"),
        ("processes", "-2", "out of range"),
        ("processes", "two", '"two" is not an integer'),
        ("processes", "1.5", "not an integer"),
        ("processes", "", "not an integer"),
    ],
)
def test_each_flag_rejects_bad_values_naming_the_flag(
    flag: str, value: str, fragment: str, no_resolv_conf: str
) -> None:
    err = config_error(f"-{flag}", value, resolv_conf=no_resolv_conf)
    assert err.flag == flag
    assert str(err).startswith(f"-{flag}: ")
    assert fragment in str(err)


def test_cache_min_ttl_above_max_is_rejected_naming_cache_min_ttl(no_resolv_conf: str) -> None:
    err = config_error("-cache-min-ttl", "600", "-cache-max-ttl", "300", resolv_conf=no_resolv_conf)
    assert err.flag == "cache-min-ttl"
    assert "600" in str(err) and "300" in str(err)


def test_cache_min_ttl_equal_to_max_is_accepted(no_resolv_conf: str) -> None:
    config = parse("-cache-min-ttl", "300", "-cache-max-ttl", "300", resolv_conf=no_resolv_conf)
    assert (config.cache_min_ttl, config.cache_max_ttl) == (300, 300)


def test_cache_min_ttl_above_default_max_is_rejected(no_resolv_conf: str) -> None:
    err = config_error("-cache-min-ttl", "86401", resolv_conf=no_resolv_conf)
    assert err.flag == "cache-min-ttl"


@pytest.mark.parametrize(
    ("listen", "upstream"),
    [
        ("127.0.0.1:53", "127.0.0.1:53"),
        (":53", "127.0.0.1"),
        (":53", "[::1]:53"),
        ("[::]:5300", "127.0.0.1:5300"),
        ("0.0.0.0:53", "127.0.0.2:53"),
    ],
)
def test_an_upstream_that_is_our_own_listener_is_a_loop(
    listen: str, upstream: str, no_resolv_conf: str
) -> None:
    err = config_error("-listen", listen, "-upstreams", upstream, resolv_conf=no_resolv_conf)
    assert err.flag == "upstreams"
    assert "forward queries to itself" in str(err)


@pytest.mark.parametrize(
    ("listen", "upstream"),
    [
        ("127.0.0.1:53", "127.0.0.1:5300"),
        ("127.0.0.1:53", "127.0.0.2:53"),
        ("0.0.0.0:53", "[::1]:53"),
        (":53", "192.0.2.1:53"),
    ],
)
def test_an_upstream_on_another_address_or_port_is_not_a_loop(
    listen: str, upstream: str, no_resolv_conf: str
) -> None:
    config = parse("-listen", listen, "-upstreams", upstream, resolv_conf=no_resolv_conf)
    assert len(config.upstreams) == 1


# --- flag syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "words",
    [
        ["-workers", "7"],
        ["--workers", "7"],
        ["-workers=7"],
        ["--workers=7"],
    ],
)
def test_flags_take_one_or_two_dashes_and_an_equals_sign(
    words: list[str], no_resolv_conf: str
) -> None:
    assert parse(*words, resolv_conf=no_resolv_conf).workers == 7


def test_equals_form_keeps_everything_after_the_first_equals_sign(no_resolv_conf: str) -> None:
    err = config_error("-log-level=info=debug", resolv_conf=no_resolv_conf)
    assert '"info=debug"' in str(err)


def test_equals_form_with_an_empty_value_is_that_empty_value(no_resolv_conf: str) -> None:
    err = config_error("--upstreams=", resolv_conf=no_resolv_conf)
    assert str(err) == "-upstreams: needs at least one address"


@pytest.mark.parametrize("word", ["-foo", "--foo", "-foo=1", "-work", "-Workers", "-w"])
def test_unknown_and_abbreviated_flags_are_rejected(word: str, no_resolv_conf: str) -> None:
    err = config_error(word, "1", resolv_conf=no_resolv_conf)
    name = word.lstrip("-").partition("=")[0]
    assert str(err) == f"-{name}: unknown flag (see -h)"


@pytest.mark.parametrize("word", ["---workers", "-=5", "--=5"])
def test_malformed_flags_are_bad_syntax(word: str, no_resolv_conf: str) -> None:
    err = config_error(word, resolv_conf=no_resolv_conf)
    assert "bad flag syntax" in str(err)


@pytest.mark.parametrize("words", [["serve"], ["-", "x"], ["--", "extra"], ["-workers", "4", "x"]])
def test_words_that_are_not_flags_are_rejected(words: list[str], no_resolv_conf: str) -> None:
    err = config_error(*words, resolv_conf=no_resolv_conf)
    assert "unexpected argument" in str(err)


def test_double_dash_alone_ends_the_flags(no_resolv_conf: str) -> None:
    config = parse_args(["-workers", "3", *UPSTREAM, "--"], resolv_conf=no_resolv_conf)
    assert config.workers == 3


@pytest.mark.parametrize(
    "words",
    [
        ["-workers"],
        ["--timeout"],
        ["-workers", "-timeout", "5s"],
        ["-listen", "--upstreams", "192.0.2.1"],
        ["-log-level", "-h"],
    ],
)
def test_a_flag_without_its_value_needs_a_value(words: list[str], no_resolv_conf: str) -> None:
    err = config_error(*words, resolv_conf=no_resolv_conf)
    name = words[0].lstrip("-")
    assert str(err) == f"-{name}: needs a value"


def test_a_value_that_starts_with_a_dash_but_is_no_flag_is_a_value(no_resolv_conf: str) -> None:
    err = config_error("-workers", "-5", resolv_conf=no_resolv_conf)
    assert str(err) == "-workers: -5 is out of range (1..65536)"


def test_a_flag_given_twice_is_rejected(no_resolv_conf: str) -> None:
    err = config_error("-workers", "4", "--workers=8", resolv_conf=no_resolv_conf)
    assert err.flag == "workers"
    assert "more than once" in str(err)


# --- -h and -version --------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["-h", "--h", "-help", "--help"])
def test_help_flags_request_the_usage_text(word: str, no_resolv_conf: str) -> None:
    with pytest.raises(InfoRequested) as info:
        parse_args([word], resolv_conf=no_resolv_conf)
    assert info.value.text == usage()


def test_usage_lists_every_flag_with_its_default() -> None:
    text = usage()
    expected = [
        ("-listen", "127.0.0.1:53"),
        ("-upstreams", "the nameservers in /etc/resolv.conf"),
        ("-workers", "128"),
        ("-queue-size", "256"),
        ("-cache-size", "10000"),
        ("-timeout", "5s"),
        ("-log-level", "info"),
        ("-cache-min-ttl", "0"),
        ("-cache-max-ttl", "86400"),
        ("-tcp-idle-timeout", "10s"),
        ("-tcp-max-connections", "256"),
        ("-processes", "1"),
    ]
    lines = text.splitlines()
    for flag, default in expected:
        (line,) = [line for line in lines if line.startswith(f"  {flag} ")]
        assert f"(default {default}" in line
        meaning = lines[lines.index(line) + 1]
        assert meaning.startswith("        ") and meaning.strip()
    assert "-version" in text and "-h, -help" in text
    assert max(len(line) for line in lines) <= 100


def test_help_is_shown_before_values_are_checked(no_resolv_conf: str) -> None:
    with pytest.raises(InfoRequested):
        parse_args(["-workers", "0", "-h"], resolv_conf=no_resolv_conf)


def test_an_unknown_flag_before_help_is_still_an_error(no_resolv_conf: str) -> None:
    with pytest.raises(ConfigError, match="unknown flag"):
        parse_args(["-foo", "-h"], resolv_conf=no_resolv_conf)


@pytest.mark.parametrize("word", ["-h=1", "-version=true"])
def test_help_and_version_take_no_value(word: str, no_resolv_conf: str) -> None:
    with pytest.raises(ConfigError, match="takes no value"):
        parse_args([word], resolv_conf=no_resolv_conf)


def test_main_help_prints_usage_to_stdout_and_returns_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["-h"]) == 0
    out, err = capsys.readouterr()
    assert out == usage() + "\n"
    assert err == ""


@pytest.mark.parametrize("word", ["-version", "--version"])
def test_main_version_prints_the_version_and_returns_0(
    word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([word]) == 0
    out, err = capsys.readouterr()
    assert out == f"picodns {__version__} ({cli.build_kind()})\n"
    assert err == ""


def test_main_reads_sys_argv_when_given_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["picodns", "-version"])
    assert main() == 0
    assert capsys.readouterr().out == f"picodns {__version__} ({cli.build_kind()})\n"


# --- main: errors and success -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "line"),
    [
        (["-timeout", "5x"], 'picodns: -timeout: "5x" is not a duration'),
        (["-foo"], "picodns: -foo: unknown flag (see -h)"),
        (["-workers"], "picodns: -workers: needs a value"),
        (["-timeout", "5\nx"], 'picodns: -timeout: "5\\nx" is not a duration'),
        (["-fo\no"], 'picodns: "-fo\\no": bad flag syntax (see -h)'),
    ],
)
def test_main_reports_a_user_mistake_as_one_line_and_returns_2(
    words: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(words + UPSTREAM) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1
    assert err.startswith(line)


def test_main_runs_the_parsed_config_and_returns_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Config] = []

    def fake_run(config: Config) -> int:
        seen.append(config)
        return 7

    monkeypatch.setattr(cli, "run", fake_run)
    assert main(["-workers", "9", *UPSTREAM]) == 7
    assert [c.workers for c in seen] == [9]
    assert seen[0].upstreams == (("127.0.0.1", 5300),)


def test_main_does_not_run_after_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_run(config: Config) -> int:
        raise AssertionError("run must not be called")

    monkeypatch.setattr(cli, "run", fail_run)
    assert main(["-workers", "0", *UPSTREAM]) == 2


def test_usage_shows_processes_and_hides_the_child_word() -> None:
    text = usage()
    assert text.count("  -processes N  (default 1)") == 1
    assert cli.CHILD_FLAG.lstrip("-") not in text


def test_processes_above_one_needs_so_reuseport(
    monkeypatch: pytest.MonkeyPatch, no_resolv_conf: str
) -> None:
    monkeypatch.delattr(cli.socket, "SO_REUSEPORT", raising=False)
    err = config_error("-processes", "2", resolv_conf=no_resolv_conf)
    assert err.flag == "processes" and "SO_REUSEPORT" in str(err)
    assert parse("-processes", "1", resolv_conf=no_resolv_conf).processes == 1


def test_run_with_more_than_one_process_hands_over_to_the_supervisor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from picodns import supervisor

    seen: list[Config] = []

    def fake_supervise(config: Config) -> int:
        seen.append(config)
        return 5

    monkeypatch.setattr(supervisor, "supervise", fake_supervise)
    config = dataclasses.replace(Config(), upstreams=(("127.0.0.1", 5300),), processes=2)
    assert cli.run(config) == 5
    assert seen == [config]


def test_main_runs_a_child_for_the_hidden_first_word(monkeypatch: pytest.MonkeyPatch) -> None:
    from picodns import supervisor

    seen: list[list[str]] = []

    def fake_child_main(words: list[str]) -> int:
        seen.append(words)
        return 3

    monkeypatch.setattr(supervisor, "child_main", fake_child_main)
    assert main([cli.CHILD_FLAG, "{}"]) == 3
    assert seen == [["{}"]]


def test_the_hidden_child_word_is_an_unknown_flag_anywhere_but_first(no_resolv_conf: str) -> None:
    with pytest.raises(ConfigError, match="unknown flag"):
        parse("-workers", "2", cli.CHILD_FLAG, "{}", resolv_conf=no_resolv_conf)


def test_timeout_error_runs_as_a_real_process_with_one_stderr_line() -> None:
    proc = run_picodns("-timeout", "5x", "-upstreams", "127.0.0.1:5300", timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("picodns: -timeout: ")
    assert proc.stdout == ""


# --- upstreams from resolv.conf ---------------------------------------------------------------


def _resolv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "resolv.conf"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_without_upstreams_flag_resolv_conf_nameservers_are_used(tmp_path: Path) -> None:
    path = _resolv(tmp_path, "# local\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n")
    config = parse_args([], resolv_conf=path)
    assert config.upstreams == (("192.0.2.53", 53), ("fe80::1", 53))


def test_upstreams_flag_wins_over_resolv_conf(tmp_path: Path) -> None:
    path = _resolv(tmp_path, "nameserver 192.0.2.53\n")
    config = parse_args(["-upstreams", "198.51.100.1"], resolv_conf=path)
    assert config.upstreams == (("198.51.100.1", 53),)


def test_missing_resolv_conf_without_upstreams_names_upstreams(no_resolv_conf: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_args([], resolv_conf=no_resolv_conf)
    assert info.value.flag == "upstreams"
    assert "names no nameserver" in str(info.value)


def test_resolv_conf_without_nameservers_names_upstreams(tmp_path: Path) -> None:
    path = _resolv(tmp_path, "search example.com\n; nameserver 192.0.2.1\n")
    with pytest.raises(ConfigError) as info:
        parse_args([], resolv_conf=path)
    assert info.value.flag == "upstreams"
    assert str(info.value).startswith("-upstreams: not given")


def test_unreadable_resolv_conf_names_upstreams(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_args([], resolv_conf=str(tmp_path))  # a directory cannot be read as a file
    assert info.value.flag == "upstreams"
    assert "cannot be read" in str(info.value)


def test_resolv_conf_pointing_at_our_own_listener_is_a_loop(tmp_path: Path) -> None:
    path = _resolv(tmp_path, "nameserver 127.0.0.1\n")
    with pytest.raises(ConfigError, match="forward queries to itself") as info:
        parse_args([], resolv_conf=path)
    assert info.value.flag == "upstreams"
