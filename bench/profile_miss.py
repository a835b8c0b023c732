"""One forwarder, one workload, one number: µs of server CPU per cache miss (and a profile).

Not part of `make bench` (which compares servers); this is the loop for working on the miss
path. Knot DNS serves the benchmark zone on core 1; PicoDNS runs pinned to core 0; dnsperf on
core 1 sends unique names (every one a miss; `--kind hit`: 17 names over and over), saturated or
at a fixed rate. Server CPU comes from /proc before and after. Everything started here is
stopped by its PID.

    .venv/bin/python bench/profile_miss.py                    # saturated, µs per miss
    .venv/bin/python bench/profile_miss.py --kind nxdomain    # negative misses
    .venv/bin/python bench/profile_miss.py --kind hit --rate 5000  # cache hits, 17 names
    .venv/bin/python bench/profile_miss.py --rate 5000        # fixed rate: p50/p99/p99.9 too
    .venv/bin/python bench/profile_miss.py --profile perf     # perf record -g (see perf report)
    .venv/bin/python bench/profile_miss.py --profile cprofile # cProfile of the server process
    .venv/bin/python bench/profile_miss.py --bare             # the floor: a bare forwarder
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servers import (  # type: ignore[import-not-found]
    PICO_FLAGS,
    Processes,
    find_binary,
    free_port,
    knot_config,
    write_zone,
)

# A forwarder with no logic at all: client datagram -> upstream with a new ID -> reply ->
# client. What Python on uvloop costs per miss before any DNS work is done.
BARE = """
import asyncio, socket, sys, uvloop
listen, up = int(sys.argv[1]), int(sys.argv[2])
class Client(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport, self.n, self.pending = transport, 0, {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(("127.0.0.1", up))
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self.readable)
    def datagram_received(self, data, addr):
        self.n = (self.n + 1) & 0xFFFF
        self.pending[self.n] = (data[:2], addr)
        self.sock.send(self.n.to_bytes(2, "big") + data[2:])
    def readable(self):
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            waiting = self.pending.pop((data[0] << 8) | data[1], None)
            if waiting:
                self.transport.sendto(waiting[0] + data[2:], waiting[1])
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", listen))
    await asyncio.sleep(3600)
uvloop.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("miss", "nxdomain", "hit"), default="miss")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=int, help="fixed rate (QPS) instead of saturating")
    parser.add_argument("--profile", choices=("perf", "cprofile"))
    parser.add_argument("--bare", action="store_true", help="run the bare forwarder instead")
    args = parser.parse_args()
    python = Path(sys.executable)
    with tempfile.TemporaryDirectory(prefix="picodns-profile-") as tmp, Processes(Path(tmp)) as ps:
        work = Path(tmp)
        zone = work / "bench.test.zone"
        write_zone(zone)
        knot_port = free_port()
        conf = work / "knot.conf"
        conf.write_text(knot_config(work, knot_port, zone))
        knot = ps.start("knot", ["taskset", "-c", "1", str(find_binary("knotd")), "-c", str(conf)])
        ps.wait_ready(knot, knot_port, "host01.bench.test.", "A")
        port = free_port()
        argv = ["taskset", "-c", "0", str(python)]
        if args.bare:
            (work / "bare.py").write_text(BARE)
            argv += [str(work / "bare.py"), str(port), str(knot_port)]
        else:
            if args.profile == "cprofile":
                argv += ["-m", "cProfile", "-o", str(Path.cwd() / "miss.prof")]
            argv += [str(python.with_name("picodns")), "-listen", f"127.0.0.1:{port}"]
            argv += ["-upstreams", f"127.0.0.1:{knot_port}", *PICO_FLAGS]
        server = ps.start("server", argv)
        ps.wait_ready(server, port, "host01.bench.test.", "A")
        names = work / "names.txt"
        tag = random.randrange(10**6)
        pattern = {
            "miss": "u{}-{}.wild.bench.test A",
            "nxdomain": "nx{}-{}.bench.test A",
            "hit": "host{1:02d}.bench.test A",  # the zone's 17 A records, over and over
        }[args.kind]
        numbers = (i % 17 + 1 if args.kind == "hit" else i for i in range(400_000))
        names.write_text("".join(pattern.format(tag, i) + "\n" for i in numbers))
        perf = None
        if args.profile == "perf":
            record = ["perf", "record", "-F", "999", "-g", "-p", str(server.pid), "-o", "perf.data"]
            perf = subprocess.Popen(record, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        load = ["-Q", str(args.rate), "-c", "4", "-q", "100", "-t", "2", "-v"] if args.rate else []
        dnsperf = ["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port)]
        saturate = ["-c", "1", "-q", "100"]
        dnsperf += ["-d", str(names), "-l", f"{args.seconds:g}", *(load or saturate)]
        before = cpu_seconds(server.pid)
        out = subprocess.run(dnsperf, capture_output=True, text=True, check=True).stdout
        used = cpu_seconds(server.pid) - before
        if perf is not None:
            perf.send_signal(2)
            perf.wait()
        found = re.search(r"Queries completed:\s+(\d+)", out)
        done = int(found.group(1)) if found else 0
        what = "bare forwarder" if args.bare else f"PicoDNS, {args.kind}"
        print(f"{what}: {done} answered, {used:.2f} CPU-s: {done / used:,.0f} q/CPU-s, "
              f"{used / max(done, 1) * 1e6:.1f} µs per query")  # fmt: skip
        if args.rate:
            ms = sorted(float(line.split()[-1]) * 1000 for line in out.splitlines()
                        if line.startswith(">"))  # fmt: skip
            if ms:
                pick = [ms[min(len(ms) - 1, int(len(ms) * f))] for f in (0.5, 0.99, 0.999)]
                p50, p99, p999 = pick
                print(f"latency ms p50 {p50:.3f} p99 {p99:.3f} p99.9 {p999:.3f}")
        ps.stop(server)
    if args.profile == "cprofile":
        print("profile written to miss.prof (python -m pstats miss.prof)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
