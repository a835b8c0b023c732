"""Instruction count of the cache-miss path under callgrind: steady numbers on a noisy machine.

One miss, in process: the client's datagram goes through the server's UDP callback, the
resolver and the upstream client to an upstream socket's send; the upstream's reply (built
here from the query sent, as an authoritative server would answer it) goes through the
socket's read callback, the cache and back out through the client transport's sendto. Both
sockets are stand-ins that only record, so the count is the Python work, not the kernel's.

Usage (from bench/, PYTHONPATH=../src:.):
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python count_miss_instructions.py N
Run with N and with 0; (total(N) - total(0)) / N is instructions per miss. A second argument,
`nxdomain`, makes every upstream reply an NXDOMAIN with an SOA in the authority section.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
from collections.abc import Callable

from standins import Transport  # type: ignore[import-not-found]

from picodns import upstream as upstream_module
from picodns.cli import build
from picodns.config import Config
from picodns.server import _Udp

# An answer to an A question: one A record whose owner points at the question's name.
ANSWER_FLAGS = b"\x85\x80"  # QR AA RD RA, NOERROR: how an authoritative server answers
ANSWER_RR = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc0\x00\x02\x63"


class _Socket(socket.socket):
    """Records what the upstream socket would send. A real (unconnected, never used) socket
    underneath, because the compiled upstream module checks the type."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent: list[bytes] = []

    def send(self, data: bytes, flags: int = 0) -> int:
        self.sent.append(data)
        return len(data)


def query(i: int) -> bytes:
    label = b"u%07d" % i
    return (
        (i & 0xFFFF).to_bytes(2, "big")
        + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"
        + bytes([len(label)]) + label + b"\x04wild\x05bench\x04test\x00\x00\x01\x00\x01"
        + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    )  # fmt: skip


def answer(sent: bytes) -> bytes:
    qend = sent.find(0, 12) + 5  # after QNAME, QTYPE and QCLASS
    counts = b"\x00\x01\x00\x01\x00\x00\x00\x01"
    return sent[:2] + ANSWER_FLAGS + counts + sent[12:qend] + ANSWER_RR + sent[qend:]


def nxdomain(sent: bytes) -> bytes:
    """NXDOMAIN, and the SOA of the zone (the question's parent name) in the authority section."""
    qend = sent.find(0, 12) + 5
    zone = (0xC000 | (13 + sent[12])).to_bytes(2, "big")  # a pointer to QNAME's second label
    rdata = b"\x02ns" + zone + b"\x02hm" + zone + (300).to_bytes(4, "big") * 5
    soa = zone + b"\x00\x06\x00\x01\x00\x00\x01\x2c" + len(rdata).to_bytes(2, "big") + rdata
    counts = b"\x00\x01\x00\x00\x00\x01\x00\x01"
    return sent[:2] + b"\x85\x83" + counts + sent[12:qend] + soa + sent[qend:]


async def main(n: int, reply: Callable[[bytes], bytes]) -> None:
    config = dataclasses.replace(
        Config(), listen=(("127.0.0.1", 0),), upstreams=(("127.0.0.1", 9),), cache_size=n + 1
    )
    server, resolver = build(config)
    udp = _Udp(server)
    transport = Transport()
    udp.transport = transport  # type: ignore[assignment]
    server.accepting = True
    upstream = resolver.client.upstreams[0]
    sock = _Socket()
    loop = asyncio.get_running_loop()
    # One stand-in socket, never retired. Builds before 440ad43 read the module's limit per
    # query; later ones copy it into each Upstream when it is made.
    upstream_module.MAX_SOCKET_USES = 1 << 62
    if hasattr(upstream, "max_uses"):
        upstream.max_uses = 1 << 62
    channel = upstream_module._Channel(upstream, loop)  # connected to 127.0.0.1:9, never sent on
    loop.remove_reader(channel.fd)
    channel.sock.close()
    channel.sock, channel.fd = sock, sock.fileno()
    upstream._channels[:] = [channel] * upstream_module.SOCKETS_PER_UPSTREAM
    queries = [query(i) for i in range(n)]
    client = ("127.0.0.1", 5353)
    for q in queries:
        udp.datagram_received(q, client)
        channel._received(reply(sock.sent.pop()))
    assert transport.replies == n and resolver.errors == 0 and len(resolver.cache) == n


asyncio.run(main(int(sys.argv[1]), nxdomain if sys.argv[2:] == ["nxdomain"] else answer))
