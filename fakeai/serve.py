"""fakeai in the caller's event loop on a free port: `async with serving() as fake: fake.url ...`.

For tests of clients that build their own HTTP stack (the `openai` SDK inside `AiClient`): real sockets,
real headers and real timeouts, without a subprocess.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from fakeai.app import create_app
from fakeai.settings import FakeSettings


@dataclass
class RunningFake:
    url: str  # the OpenAI-style base URL, ending in /v1
    root: str

    async def configure(self, **knobs: Any) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{self.root}/_fake/config", json=knobs)
        response.raise_for_status()

    async def requests(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as client:
            result: list[dict[str, Any]] = (await client.get(f"{self.root}/_fake/requests")).json()
        return result

    async def stats(self) -> dict[str, int]:
        async with httpx.AsyncClient() as client:
            result: dict[str, int] = (await client.get(f"{self.root}/_fake/stats")).json()
        return result


@asynccontextmanager
async def serving(settings: FakeSettings | None = None) -> AsyncIterator[RunningFake]:
    # Bound here and handed to uvicorn: no gap between choosing the port and listening on it.
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it every
    # response waited ~40 ms for the client's delayed ACK (Nagle), on /health as on every model call.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(create_app(settings or FakeSettings()), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        root = f"http://127.0.0.1:{port}"
        yield RunningFake(url=f"{root}/v1", root=root)
    finally:
        server.should_exit = True
        await task
        sock.close()
