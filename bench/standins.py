"""Stand-ins for the instruction counters: record what a socket or transport would send, so a
count is the Python work and not the kernel's."""

from __future__ import annotations

from typing import Any


class Transport:
    """Counts the replies the client transport would send."""

    replies = 0

    def sendto(self, data: bytes, addr: Any) -> None:
        self.replies += 1

    def is_closing(self) -> bool:
        return False
