"""The event loop every service process runs on: uvloop unless `CONTENTLINE_EVENT_LOOP=asyncio`.

Our services spend their CPU on many small exchanges (a Kafka fetch, a dozen short statements per command, an
outbox relay round), most of it in the loop's own machinery: socket reads and writes, callbacks, timers.
uvloop does that part in libuv; asyncpg, aiokafka, httpx and uvicorn all run on it unchanged. Measured in
`bench/pipeline.py`: see the README's bench section (issue 13).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import uvloop

from shared.settings import get_settings


def serve(main: Coroutine[Any, Any, None]) -> None:
    """Run a service's main coroutine to the end on the configured loop."""
    if get_settings().event_loop == "uvloop":
        uvloop.run(main)
    else:
        asyncio.run(main)
