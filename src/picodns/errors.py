"""The one error root of PicoDNS, split by who is at fault.

- The peer sent bad bytes: :class:`WireError` (carries the rcode it implies, FORMERR by default).
- An upstream failed: :class:`UpstreamError` and its :class:`UpstreamTimeout`.
- The operator gave a bad flag or config value: :class:`ConfigError`, naming the flag.

Each class's docstring is its default message. Stdlib only.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BADVERS",
    "FORMERR",
    "NOERROR",
    "NOTIMP",
    "NXDOMAIN",
    "REFUSED",
    "SERVFAIL",
    "ConfigError",
    "PicoDNSError",
    "UpstreamError",
    "UpstreamTimeout",
    "WireError",
]

# RFC 1035 4.1.1 / RFC 6891 6.1.3 response codes used across the package.
NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NXDOMAIN: Final = 3
NOTIMP: Final = 4
REFUSED: Final = 5
BADVERS: Final = 16


class PicoDNSError(Exception):
    """PicoDNS error."""

    def __init__(self, msg: str | None = None) -> None:
        super().__init__(msg if msg is not None else (self.__doc__ or "").strip())


class WireError(PicoDNSError):
    """Malformed DNS message."""

    def __init__(self, msg: str | None = None, rcode: int | None = FORMERR) -> None:
        super().__init__(msg)
        self.rcode = rcode
        """The response code the fault implies, or None when no reply may be sent at all
        (shorter than a header, or a response sent to us: answering could start a loop)."""


class UpstreamError(PicoDNSError):
    """Upstream query failed."""

    def __init__(self, msg: str | None = None, reason: str = "network") -> None:
        super().__init__(msg)
        self.reason = reason
        """Why, as counted in metrics: timeout, servfail, refused, mismatch, network, malformed."""


class UpstreamTimeout(UpstreamError):
    """Upstream query timed out."""

    def __init__(self, msg: str | None = None) -> None:
        super().__init__(msg, reason="timeout")


class ConfigError(PicoDNSError):
    """Invalid configuration."""

    def __init__(self, flag: str, msg: str) -> None:
        super().__init__(f"-{flag}: {msg}")
        self.flag = flag
