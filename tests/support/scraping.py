"""Reading PicoDNS's HTTP endpoint in tests: GET a path, scrape /metrics into samples."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def http_get(address: tuple[str, int], path: str) -> tuple[int, str]:
    """GET `path`; return the status code and the body."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def scrape(address: tuple[str, int]) -> Samples:
    """/metrics parsed by prometheus_client: (name, sorted labels) -> value."""
    status, text = await http_get(address, "/metrics")
    assert status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value, 0 when absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
