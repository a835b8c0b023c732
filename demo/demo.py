"""`make demo`: PicoDNS forwarding to a small authority, asked the way real clients ask.

Everything runs on 127.0.0.1: the authority (demo/authority.py) in threads of this process,
PicoDNS as a child process started like an operator would, dnspython (and `dig`, when installed)
as the clients. Each step prints what the client got and checks it; where it matters it also
checks what reached the authority, because that is how caching and TCP fallback are proven.
Any wrong result is printed and the demo exits 1, so it doubles as a smoke test.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
from authority import HOST, Authority

TIMEOUT = 2.0  # seconds a client waits for one reply
START_TIMEOUT = 15.0  # seconds PicoDNS gets to print its listening line
STOP_TIMEOUT = 10.0  # seconds PicoDNS gets to exit after SIGTERM
MISSES = 10  # distinct never-asked names timed for the cache-miss latency
HITS = 50  # repeats of one cached name timed for the cache-hit latency
TTL_WAIT = 1.5  # seconds between two looks at a cached TTL
BIG_TXT_STRINGS = 15  # big.example.test: 15 strings of 200 digits, 3000 bytes of text
_LISTENING = re.compile(r"listening on (\S+):(\d+) ")


class Report:
    """Prints steps and checks; remembers what failed."""

    def __init__(self) -> None:
        self.passed = 0
        self.failures: list[str] = []
        self._section = ""

    def section(self, title: str) -> None:
        self._section = title
        print(f"\n== {title}")

    def say(self, text: str) -> None:
        print(f"   {text}")

    def check(self, ok: bool, what: str, wrong: str = "") -> bool:
        """Record one expectation; on failure print `wrong` (what was seen instead)."""
        if ok:
            self.passed += 1
            print(f"   ok    {what}")
        else:
            where = f"{self._section}: " if self._section else ""
            self.failures.append(where + what + (f" ({wrong})" if wrong else ""))
            print(f"   FAIL  {what}" + (f"\n         got: {wrong}" if wrong else ""))
        return ok


class PicoDNS:
    """`python -m picodns` as a child; its port is read from the startup line on stderr."""

    def __init__(self, upstream_port: int) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "picodns",
            "-listen",
            f"{HOST}:0",
            "-upstreams",
            f"{HOST}:{upstream_port}",
            "-log-level",
            "info",
        ]
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.lines: list[str] = []
        self.port = 0
        self._ready = threading.Event()
        # A thread drains stderr for the whole run, so a chatty log can never fill the pipe.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or not self.port:
            self.kill()
            log = "".join("\n  " + line for line in self.lines)
            raise RuntimeError(f"picodns did not start (exit status {self.proc.poll()}){log}")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = _LISTENING.search(line)
            if match and not self.port:
                self.port = int(match.group(2))
                self._ready.set()
        self._ready.set()  # stderr closed: the process is gone

    def stop(self) -> tuple[int, float]:
        """SIGTERM it; return its exit status and how long it took to exit."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(2)
        return status, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Demo:
    """The steps: each asks PicoDNS, prints what came back, and checks it."""

    def __init__(self, report: Report, authority: Authority, pico: PicoDNS) -> None:
        self.r = report
        self.authority = authority
        self.pico = pico

    # --- helpers ------------------------------------------------------------------------

    def ask(
        self, name: str, rdtype: str, *, tcp: bool = False, payload: int | None = 1232
    ) -> tuple[dns.message.Message, float]:
        """Ask PicoDNS; return the reply and the client-side round trip in seconds.

        `payload` None sends no EDNS at all (the classic 512-byte UDP limit).
        """
        if payload is None:
            query = dns.message.make_query(name, rdtype, use_edns=False)
        else:
            query = dns.message.make_query(name, rdtype, use_edns=0, payload=payload)
        send = dns.query.tcp if tcp else dns.query.udp
        start = time.perf_counter()
        reply = send(query, HOST, port=self.pico.port, timeout=TIMEOUT)
        return reply, time.perf_counter() - start

    def upstream_seen(self) -> int:
        """How many queries the authority has received so far."""
        return len(self.authority.received)

    def show(self, reply: dns.message.Message, seconds: float) -> None:
        rcode = dns.rcode.to_text(reply.rcode())
        flags = dns.flags.to_text(reply.flags).lower()
        self.r.say(f"rcode {rcode}, flags [{flags}], {seconds * 1e3:.2f} ms")
        for rrset in reply.answer:
            for line in rrset.to_text().splitlines():
                self.r.say("  answer     " + _shorten(line))
        for rrset in reply.authority:
            self.r.say("  authority  " + rrset.to_text())

    def expect_answer(self, name: str, rdtype: str, want: set[str]) -> None:
        reply, seconds = self.ask(name, rdtype)
        self.r.say(f"{name} {rdtype}")
        self.show(reply, seconds)
        got = _rdata(reply, name, rdtype)
        self.r.check(
            reply.rcode() == dns.rcode.NOERROR and got == want,
            f"{rdtype} {name} is {', '.join(sorted(want))}",
            f"{dns.rcode.to_text(reply.rcode())} {sorted(got)}",
        )
        self.r.check(bool(reply.flags & dns.flags.RA), "RA=1 (PicoDNS offers recursion)")

    # --- the steps ----------------------------------------------------------------------

    def basics(self) -> None:
        self.r.section("Plain answers: A, AAAA, MX, TXT (each a cache miss, forwarded)")
        self.expect_answer("www.example.test.", "A", {"192.0.2.10"})
        self.expect_answer("www.example.test.", "AAAA", {"2001:db8::10"})
        self.expect_answer("example.test.", "MX", {"10 mail.example.test."})
        self.expect_answer("txt.example.test.", "TXT", {'"hello from the demo zone"'})
        reply, _ = self.ask("WwW.eXaMpLe.TeSt.", "A")
        spelled = reply.question[0].name.to_text() if reply.question else ""
        self.r.say(f"asked as WwW.eXaMpLe.TeSt. (cached as www.example.test.): echoed {spelled}")
        self.r.check(
            spelled == "WwW.eXaMpLe.TeSt." and _rdata(reply, spelled, "A") == {"192.0.2.10"},
            "the cached answer comes back in the client's spelling (RFC 4343)",
            spelled,
        )
        self.r.section("A wildcard (*.wild.example.test) as the authority expands it")
        self.expect_answer("anything.wild.example.test.", "A", {"192.0.2.99"})

    def cname_chain(self) -> None:
        self.r.section("CNAME chain: alias -> alias2 -> www")
        reply, seconds = self.ask("alias.example.test.", "A")
        self.show(reply, seconds)
        chain = [_chain_step(rrset) for rrset in reply.answer]
        self.r.say("chain: " + " -> ".join(chain))
        want = [
            "alias.example.test. CNAME alias2.example.test.",
            "alias2.example.test. CNAME www.example.test.",
            "www.example.test. A 192.0.2.10",
        ]
        self.r.check(
            reply.rcode() == dns.rcode.NOERROR and chain == want,
            "the whole chain, in order, ending at 192.0.2.10",
            " | ".join(chain),
        )

    def negative(self) -> None:
        self.r.section("Negative answers: NXDOMAIN and NODATA carry the SOA")
        before = self.upstream_seen()
        reply, seconds = self.ask("no-such-name.example.test.", "A")
        self.r.say("no-such-name.example.test. A")
        self.show(reply, seconds)
        soa = [rrset for rrset in reply.authority if rrset.rdtype == dns.rdatatype.SOA]
        self.r.check(
            reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer,
            "NXDOMAIN, empty answer",
            dns.rcode.to_text(reply.rcode()),
        )
        self.r.check(
            len(soa) == 1 and 0 < soa[0].ttl <= 60,
            "SOA in authority, TTL at most the SOA MINIMUM (60)",
            str([rrset.to_text() for rrset in reply.authority]),
        )
        again, seconds = self.ask("no-such-name.example.test.", "A")
        self.r.say(f"asked again: {dns.rcode.to_text(again.rcode())}, {seconds * 1e3:.2f} ms")
        self.r.check(
            again.rcode() == dns.rcode.NXDOMAIN and self.upstream_seen() == before + 1,
            "the repeat is answered from the cache (authority asked once)",
            f"authority asked {self.upstream_seen() - before} times",
        )
        reply, seconds = self.ask("www.example.test.", "MX")
        self.r.say("www.example.test. MX")
        self.show(reply, seconds)
        self.r.check(
            reply.rcode() == dns.rcode.NOERROR
            and not reply.answer
            and any(rrset.rdtype == dns.rdatatype.SOA for rrset in reply.authority),
            "NODATA: NOERROR, empty answer, SOA in authority",
            f"{dns.rcode.to_text(reply.rcode())} answer={len(reply.answer)}",
        )

    def big_answer(self) -> None:
        self.r.section("A 3000-byte TXT (big.example.test): truncation and TCP")
        start = len(self.authority.received)
        truncated = self.authority.truncated
        reply, seconds = self.ask("big.example.test.", "TXT", payload=None)
        size = len(reply.to_wire())
        self.r.say(f"UDP, no EDNS (512-byte buffer): {size} bytes, {seconds * 1e3:.2f} ms")
        self.show(reply, seconds)
        self.r.check(
            bool(reply.flags & dns.flags.TC) and not reply.answer and size <= 512,
            "PicoDNS answers TC=1 with an empty answer: retry over TCP",
            f"flags [{dns.flags.to_text(reply.flags)}], {len(reply.answer)} answer RRsets",
        )
        seen = [(t, payload) for t, q, payload in self.authority.received[start:] if "big" in q]
        self.r.say("what reached the authority for this question:")
        for transport, payload in seen:
            self.r.say(f"  {transport.upper()} query, EDNS payload {payload}")
        self.r.say(f"  authority truncations: {self.authority.truncated - truncated}")
        self.r.check(
            [t for t, _ in seen] == ["udp", "tcp"]
            and seen[0][1] == 1232
            and self.authority.truncated == truncated + 1,
            "PicoDNS asked over UDP (EDNS 1232), got TC=1, and retried upstream over TCP",
            str(seen),
        )
        before = self.upstream_seen()
        reply, seconds = self.ask("big.example.test.", "TXT", tcp=True)
        strings = _txt_strings(reply)
        text = b"".join(strings)
        self.r.say(
            f"TCP: {len(reply.to_wire())} bytes, {len(strings)} strings, {len(text)} bytes of"
            f" text, {seconds * 1e3:.2f} ms"
        )
        want = b"".join(f"{i:02d}".encode() * 100 for i in range(BIG_TXT_STRINGS))
        self.r.check(
            reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.TC and text == want,
            "TCP gets the whole record, byte for byte",
            f"{len(strings)} strings, {len(text)} bytes",
        )
        reply, seconds = self.ask("big.example.test.", "TXT", payload=4096)
        self.r.say(f"UDP, EDNS 4096: {len(reply.to_wire())} bytes, {seconds * 1e3:.2f} ms")
        self.r.check(
            not reply.flags & dns.flags.TC and b"".join(_txt_strings(reply)) == want,
            "a client with a 4096-byte EDNS buffer gets it whole over UDP",
            f"flags [{dns.flags.to_text(reply.flags)}], {len(_txt_strings(reply))} strings",
        )
        self.r.check(
            self.upstream_seen() == before,
            "both were served from PicoDNS's cache (authority not asked again)",
            f"authority asked {self.upstream_seen() - before} more times",
        )

    def latency(self) -> None:
        self.r.section(f"Cache miss vs hit latency ({MISSES} misses, {HITS} hits, at the client)")
        self.r.say("timed send-to-receive on one connected UDP socket; dnspython builds and")
        self.r.say("checks the messages outside the timed part, so its cost is left out")
        names = [f"t{i}.wild.example.test." for i in range(MISSES)]
        before = self.upstream_seen()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((HOST, self.pico.port))
            sock.settimeout(TIMEOUT)
            misses = [self.timed_exchange(sock, name) for name in names]
            after_misses = self.upstream_seen()
            hits = [self.timed_exchange(sock, names[0]) for _ in range(HITS)]
        miss_us = statistics.median(misses) * 1e6
        hit_us = statistics.median(hits) * 1e6
        self.r.say(f"miss (distinct wildcard names): median {miss_us:8.0f} us")
        self.r.say(f"hit  ({names[0]} x{HITS}): median {hit_us:8.0f} us")
        self.r.say(f"a hit is {miss_us / hit_us:.0f}x faster than a miss")
        self.r.check(
            after_misses - before == MISSES and self.upstream_seen() == after_misses,
            f"each miss reached the authority once; the {HITS} hits never did",
            f"misses sent {after_misses - before}, hits sent {self.upstream_seen() - after_misses}",
        )
        if hit_us >= miss_us:  # timing is evidence, not proof: noted, not failed
            self.r.say("note: hits were not faster than misses on this run (a busy machine?)")

    def timed_exchange(self, sock: socket.socket, name: str) -> float:
        """Send an A query for `name` on `sock`; check the reply; return the seconds it took."""
        query = dns.message.make_query(name, "A", use_edns=0, payload=1232)
        wire = query.to_wire()
        start = time.perf_counter()
        sock.send(wire)
        data = sock.recv(65535)
        seconds = time.perf_counter() - start
        reply = dns.message.from_wire(data)
        if not query.is_response(reply) or _rdata(reply, name, "A") != {"192.0.2.99"}:
            raise AssertionError(f"{name}: unexpected reply {reply}")
        return seconds

    def ttl_ages(self) -> None:
        self.r.section(f"TTL counts down in the cache (short.example.test, TTL 5, {TTL_WAIT} s)")
        before = self.upstream_seen()
        first, _ = self.ask("short.example.test.", "A")
        time.sleep(TTL_WAIT)
        second, _ = self.ask("short.example.test.", "A")
        ttl1, ttl2 = _ttl(first), _ttl(second)
        self.r.say(f"first answer TTL {ttl1}; {TTL_WAIT} s later TTL {ttl2}")
        self.r.check(ttl1 == 5, "the first answer carries the zone's TTL 5", str(ttl1))
        self.r.check(
            ttl2 is not None and ttl1 is not None and 1 <= ttl1 - ttl2 <= 2,
            "the cached answer's TTL went down by the time waited",
            str(ttl2),
        )
        self.r.check(
            self.upstream_seen() == before + 1,
            "the second answer came from the cache",
            f"authority asked {self.upstream_seen() - before} times",
        )

    def dig(self) -> None:
        dig = shutil.which("dig")
        if dig is None:
            self.r.section("dig (skipped: not installed)")
            return
        argv = [
            dig,
            f"@{HOST}",
            "-p",
            str(self.pico.port),
            "alias.example.test.",
            "A",
            "+noall",
            "+answer",
            "+comments",
            "+time=2",
            "+tries=1",
        ]
        self.r.section("The same CNAME chain through dig")
        self.r.say("$ dig @127.0.0.1 -p PORT alias.example.test A +noall +answer +comments")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        for line in done.stdout.splitlines():
            if line.strip():
                self.r.say("  " + line)
        self.r.check(
            done.returncode == 0 and "NOERROR" in done.stdout and "192.0.2.10" in done.stdout,
            "dig gets NOERROR and the chain ends at 192.0.2.10",
            f"exit {done.returncode} {done.stderr.strip()}",
        )


def _rdata(reply: dns.message.Message, name: str, rdtype: str) -> set[str]:
    for rrset in reply.answer:
        if rrset.name == dns.name.from_text(name) and rrset.rdtype == dns.rdatatype.from_text(
            rdtype
        ):
            return {rdata.to_text() for rdata in rrset}
    return set()


def _chain_step(rrset: dns.rrset.RRset) -> str:
    return f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rrset[0]}"


def _txt_strings(reply: dns.message.Message) -> list[bytes]:
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            return [s for rdata in rrset for s in rdata.strings]
    return []


def _ttl(reply: dns.message.Message) -> int | None:
    return reply.answer[0].ttl if reply.answer else None


def _shorten(line: str, width: int = 90) -> str:
    return line if len(line) <= width else line[: width - 25] + f"... ({len(line)} chars)"


def main() -> int:
    began = time.monotonic()
    report = Report()
    authority = Authority()
    port = authority.start()
    print(f"PicoDNS demo: authority for {authority.origin} on {HOST}:{port} (udp+tcp, in-process)")
    pico: PicoDNS | None = None
    try:
        pico = PicoDNS(port)
        print(f"started: {' '.join(['python', *pico.argv[1:]])}")
        print(f"PicoDNS says: {pico.lines[-1]}")
        print(f"PicoDNS is on {HOST}:{pico.port} (pid {pico.proc.pid})")
        demo = Demo(report, authority, pico)
        steps: list[Callable[[], None]] = [
            demo.basics,
            demo.cname_chain,
            demo.negative,
            demo.big_answer,
            demo.latency,
            demo.ttl_ages,
            demo.dig,
        ]
        for step in steps:
            try:
                step()
            except Exception as exc:  # a step that blew up is a failed step; go on to the next
                report.check(False, f"{step.__name__} ran", f"{type(exc).__name__}: {exc}")
        report.section("Shutdown: SIGTERM")
        status, seconds = pico.stop()
        report.say(f"PicoDNS exited with status {status} after {seconds * 1e3:.0f} ms; its log:")
        for line in pico.lines:
            report.say("  " + line)
        report.check(status == 0, "exit status 0", str(status))
        report.check(
            any("picodns stopped" in line for line in pico.lines),
            "it logged a clean stop",
        )
    except Exception as exc:
        report.check(False, "the demo ran", f"{type(exc).__name__}: {exc}")
    finally:
        if pico is not None:
            pico.kill()
        authority.stop()
    print("\n== Summary")
    print(
        f"   authority received udp={authority.queries['udp']} tcp={authority.queries['tcp']},"
        f" truncated {authority.truncated} UDP replies"
    )
    print(
        f"   {report.passed} checks passed, {len(report.failures)} failed,"
        f" {time.monotonic() - began:.1f} s"
    )
    for failure in report.failures:
        print(f"   FAILED: {failure}")
    print("   demo " + ("FAILED" if report.failures else "passed"))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
