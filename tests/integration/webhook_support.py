"""Webhook test support: a real HTTP receiver, the service interface on the test's database, run events.

The receiver is a stdlib ThreadingHTTPServer on a free port, in a thread. It records every request on arrival
and answers as told: fail the first N requests of each webhook-id, answer a fixed status, or never answer
(hold the request until the test closes the receiver).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devstack.stack import Stack
from services.webhooks.schemas import EndpointCreate, EndpointCreated
from services.webhooks.service import WebhookService
from shared.contracts import RunEvent, RunStatus, new_message_id
from shared.db.models import Site
from shared.settings import Settings

HANG_LIMIT_SECONDS = 300.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default listen backlog (5) refuses connections under a burst of deliveries


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int | None  # the status sent back; None: never answered
    at: float  # time.monotonic() on arrival

    @property
    def event_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, *, fail_first: int = 0, fail_status: int = 500, status: int = 200, hang: bool = False) -> None:
        self.fail_first, self.fail_status, self.status, self.hang = fail_first, fail_status, status, hang
        self.requests: list[Received] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="webhook-receiver")
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def for_event(self, event_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.event_id == event_id]

    def successes(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.answered is not None and 200 <= r.answered < 300]

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decide(self, headers: dict[str, str]) -> int | None:
        if self.hang:
            return None
        event_id = headers.get("webhook-id", "")
        with self._lock:
            self._seen[event_id] = n = self._seen.get(event_id, 0) + 1
        return self.fail_status if n <= self.fail_first else self.status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = receiver._decide(headers)
                with receiver._lock:
                    receiver.requests.append(Received(headers, body, answer, arrived))
                if answer is None:  # never answers: hold the connection until the test lets go
                    receiver._release.wait(HANG_LIMIT_SECONDS)
                    return
                self.send_response(answer)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if answer < 300 else b"no")

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        return Handler


def webhook_service(stack: Stack, db: async_sessionmaker[AsyncSession]) -> WebhookService:
    """The interface the orchestrator's router will call, on the test's own sessions, with the stack's key."""
    settings = Settings(database_url=stack.database_url, secret_key=SecretStr(stack.secret_key))
    return WebhookService(db, settings)


async def account_of(db: async_sessionmaker[AsyncSession], site_id: str) -> str:
    async with db() as session:
        account = await session.scalar(select(Site.account_id).where(Site.id == site_id))
    assert account is not None
    return account


async def subscribe(
    service: WebhookService, account_id: str, receiver: Receiver, *types: str, made: list[tuple[str, str]]
) -> EndpointCreated:
    """An endpoint for `receiver`; appended to `made` so the test's fixture deletes it afterwards."""
    endpoint = await service.create_endpoint(
        account_id, EndpointCreate.model_validate({"url": receiver.url, "event_types": list(types)})
    )
    made.append((account_id, endpoint.id))
    return endpoint


def run_event(account_id: str, site_id: str, event: str = "paused", status: RunStatus = RunStatus.PAUSED,
              stage: int = 3, detail: str = "from a test") -> RunEvent:  # fmt: skip
    return RunEvent(account_id=account_id, site_id=site_id, run_id=f"run_{new_message_id()}", stage=stage,
                    status=status, event=event, detail=detail)  # fmt: skip
