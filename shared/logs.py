"""Logging setup: one line per event, service name first, never secrets (settings hold them as SecretStr)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str, service: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # aiokafka logs every rebalance detail at INFO; keep it to warnings.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
