"""Ports for the stack's servers, picked below the kernel's ephemeral port range.

`bind(0)` hands out a port from the ephemeral range (32768-60999 on this machine), the range every outgoing
connection's local port comes from too. The stack picks its ports first and starts the servers later (the fake
provider after Kafka and PostgreSQL, seconds on), and in between a client connection of the stack itself could
take the port: a bench run's fake provider died with "address already in use" (2026-12-02). Below that range
only servers that bind a port explicitly compete, and the pick checks that the port is free.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_SPAN = 12000  # how far below the ephemeral range to pick


def _ephemeral_low() -> int | None:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # not Linux: let the kernel pick


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port nothing listens on, outside the range outgoing connections draw from (where the OS says it)."""
    low = _ephemeral_low()
    if low is not None and low - 1024 > 1000:
        for port in random.sample(range(max(1024, low - _SPAN), low), 200):
            if _bindable(port):
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
