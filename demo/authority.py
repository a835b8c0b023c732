"""A small authoritative DNS server for the demo: one zone file, UDP and TCP on one loopback port.

It answers from tests/data/example.test.zone so `make demo` needs nothing but this repository.
Rules it keeps:

- Every reply is authoritative (AA=1); names outside the zone get REFUSED, not a referral.
- CNAMEs are chased inside the zone, each step in the answer section (RFC 1034 4.3.2).
- Wildcards are expanded the simple way: a missing name is looked up as ``*.`` + each ancestor,
  nearest first, stopping at the first ancestor that exists (RFC 4592 is stricter).
- NXDOMAIN and NODATA carry the zone's SOA in the authority section, its TTL capped at the SOA
  MINIMUM so resolvers cache the negative answer for that long (RFC 2308 3).
- Over UDP, a reply larger than the query's EDNS payload (512 without EDNS, RFC 1035 4.2.1) is
  replaced by an empty one with TC=1, so the asker retries over TCP (RFC 7766 5).
- It counts queries per transport and truncations, and records each question with its transport
  and EDNS payload, so the demo can prove what reached it.

Run it alone with ``python demo/authority.py``; it prints its address and serves until
Ctrl-C or SIGTERM. The demo imports :class:`Authority` and runs it in threads.
"""

from __future__ import annotations

import signal
import socket
import socketserver
import sys
import threading
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.node
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone

__all__ = ["ORIGIN", "ZONE", "Authority"]

ZONE = Path(__file__).resolve().parent.parent / "tests" / "data" / "example.test.zone"
ORIGIN = "example.test."
HOST = "127.0.0.1"
MIN_UDP_PAYLOAD = 512  # RFC 1035 4.2.1: the UDP limit when the query has no EDNS
MAX_MESSAGE = 65535  # RFC 1035 4.2.2: the most a TCP length prefix can frame
MAX_CNAME_CHAIN = 8  # steps chased before giving up on a (looping) chain
TCP_IDLE = 5.0  # seconds a TCP connection may sit idle between queries
BIND_ATTEMPTS = 50  # port-0 UDP binds tried before giving up on a port free for TCP too


class Authority:
    """Serves one zone authoritatively on 127.0.0.1, UDP and TCP on the same port."""

    def __init__(self, zone_file: Path = ZONE, origin: str = ORIGIN) -> None:
        self.origin = dns.name.from_text(origin)
        self.zone = dns.zone.from_file(str(zone_file), origin=self.origin, relativize=False)
        soa = self.zone.find_rdataset(self.origin, dns.rdatatype.SOA)
        self._soa = dns.rrset.from_rdata_list(self.origin, min(soa.ttl, soa[0].minimum), list(soa))
        self._lock = threading.Lock()
        self.queries = {"udp": 0, "tcp": 0}
        """Queries received, by transport."""
        self.truncated = 0
        """UDP replies sent as TC=1 because the full answer did not fit."""
        self.received: list[tuple[str, str, int]] = []
        """Every readable query: (transport, "name TYPE", EDNS payload or 0 without EDNS)."""
        self.port = 0
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    # --- the DNS part: bytes in, bytes out ------------------------------------------------

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        """Return the reply to the query `wire` received over `transport` ("udp" or "tcp").

        Returns None for bytes that are not a readable query (they are dropped). Raises nothing.
        """
        with self._lock:
            self.queries[transport] += 1
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if query.flags & dns.flags.QR:
            return None
        if len(query.question) == 1:
            asked = query.question[0]
            seen = f"{asked.name} {dns.rdatatype.to_text(asked.rdtype)}"
            with self._lock:
                self.received.append((transport, seen, query.payload if query.edns >= 0 else 0))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        else:
            self._resolve(query.question[0], response)
        out = response.to_wire(max_size=MAX_MESSAGE)  # the limit is applied below, by hand
        if transport == "udp":
            limit = max(query.payload, MIN_UDP_PAYLOAD) if query.edns >= 0 else MIN_UDP_PAYLOAD
            if len(out) > limit:
                with self._lock:
                    self.truncated += 1
                response.answer.clear()
                response.authority.clear()
                response.additional.clear()
                response.flags |= dns.flags.TC
                out = response.to_wire(max_size=MAX_MESSAGE)
        return out

    def _resolve(self, question: dns.rrset.RRset, response: dns.message.Message) -> None:
        """Fill `response` for `question`: answer, CNAME chain, or a negative answer."""
        name, rdtype = question.name, question.rdtype
        if question.rdclass != dns.rdataclass.IN or not name.is_subdomain(self.origin):
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.REFUSED)
            return
        for _ in range(MAX_CNAME_CHAIN):
            node = self._find(name)
            if node is None:
                if not self._is_empty_nonterminal(name):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(self._soa)
                return
            if rdtype == dns.rdatatype.ANY:  # every set the name owns (RFC 8482 allows less)
                for rdataset in node.rdatasets:
                    response.answer.append(_rrset(name, rdataset))
                return
            rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rdataset is not None:
                response.answer.append(_rrset(name, rdataset))
                return
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:  # the name exists without this type: NODATA
                response.authority.append(self._soa)
                return
            response.answer.append(_rrset(name, cname))
            name = cname[0].target
            if not name.is_subdomain(self.origin):
                return  # the asker resolves the rest itself
        response.set_rcode(dns.rcode.SERVFAIL)  # the chain loops

    def _find(self, name: dns.name.Name) -> dns.node.Node | None:
        """Return the node for `name`, or the wildcard node that covers it, or None."""
        node = self.zone.get_node(name)
        if node is not None:
            return node
        ancestor = name
        while ancestor != self.origin:
            ancestor = ancestor.parent()
            wildcard = self.zone.get_node(dns.name.Name((b"*", *ancestor.labels)))
            if wildcard is not None:
                return wildcard
            if self.zone.get_node(ancestor) is not None:
                return None  # the closest encloser exists and has no wildcard
        return None

    def _is_empty_nonterminal(self, name: dns.name.Name) -> bool:
        """True when `name` owns no records but names below it do (it exists: NODATA)."""
        return any(owner != name and owner.is_subdomain(name) for owner in self.zone.nodes)

    # --- the I/O part: socketserver threads ------------------------------------------------

    def start(self) -> int:
        """Bind UDP and TCP on one free 127.0.0.1 port and serve in threads; return the port.

        Raises OSError when no port free for both could be found.
        """
        udp, tcp = self._bind()
        self.port = udp.server_address[1]
        self._servers = [udp, tcp]
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.port

    def stop(self) -> None:
        """Stop serving and close both sockets. Safe to call twice."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(5)
        self._servers, self._threads = [], []

    def _bind(self) -> tuple[socketserver.UDPServer, socketserver.TCPServer]:
        for _ in range(BIND_ATTEMPTS):
            udp = _UDPServer((HOST, 0), _UDPHandler)
            udp.authority = self
            try:
                tcp = _TCPServer((HOST, udp.server_address[1]), _TCPHandler)
            except OSError:  # TCP has that port number in use: take another
                udp.server_close()
                continue
            tcp.authority = self
            return udp, tcp
        raise OSError("no port free for both UDP and TCP on " + HOST)


class _UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    block_on_close = False
    authority: Authority


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False  # a port still used by someone else must fail, not be shared
    authority: Authority


class _UDPHandler(socketserver.BaseRequestHandler):
    server: _UDPServer

    def handle(self) -> None:
        data, sock = self.request
        reply = self.server.authority.answer(data, "udp")
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    """Reads length-framed queries (RFC 1035 4.2.2) until the client closes or idles out."""

    server: _TCPServer

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(TCP_IDLE)
        try:
            while True:
                size = _read_exactly(conn, 2)
                if size is None:
                    return
                data = _read_exactly(conn, int.from_bytes(size, "big"))
                if data is None:
                    return
                reply = self.server.authority.answer(data, "tcp")
                if reply is None:
                    return
                conn.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:  # timeouts and resets end the connection
            return


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    """Return `rdataset` as an RRset owned by `name` (for a wildcard: the name asked)."""
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    """Return exactly `size` bytes from `conn`, or None when it closes first."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def main(argv: list[str] | None = None) -> int:
    """Serve the demo zone until SIGINT or SIGTERM; print the address. Returns 0."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: python demo/authority.py   (serves on a free 127.0.0.1 port)")
        return 2
    authority = Authority()
    port = authority.start()
    print(f"authority for {authority.origin} listening on {HOST}:{port} (udp+tcp)", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    authority.stop()
    print(f"stopped; queries udp={authority.queries['udp']} tcp={authority.queries['tcp']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
