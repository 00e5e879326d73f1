"""The dispatcher: sends due deliveries over HTTP, signed, and records what happened. Its own asyncio task,
next to the Kafka consumer, which only writes delivery rows: a dead or slow receiver delays its own
deliveries and nothing else.

- Claims (repository.claim_due) take due rows with SKIP LOCKED and lease them for one attempt, so replicas
  never send one delivery at the same moment; the attempt is counted before the request goes out.
- Bounded: at most `webhook_max_concurrency` requests in flight per process and `webhook_max_per_endpoint`
  per endpoint (per process); each request has a connect timeout and a hard total timeout. Candidates are
  taken per endpoint and first attempts go before retries, so a dead endpoint's backlog cannot crowd out
  the others.
- Outcomes: 2xx → delivered. 410 Gone → the receiver says the endpoint is gone for good: the endpoint is
  disabled (with the reason) and the delivery is dead; its other deliveries wait, and resume if someone
  re-enables it. Anything else (other statuses, redirects, network errors, timeouts) → retried on the
  back-off schedule until the attempts run out → dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.webhooks import crypto
from services.webhooks import repository as repo
from services.webhooks.backoff import Backoff
from services.webhooks.signing import signature_headers
from shared.contracts import utcnow
from shared.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = "contentline-webhooks/1"
ERROR_BODY_BYTES = 500  # of a receiver's error answer, kept in last_error
PRUNE_EVERY_SECONDS = 600.0


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def make_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.webhook_timeout_seconds, connect=settings.webhook_connect_timeout_seconds),
        limits=httpx.Limits(max_connections=settings.webhook_max_concurrency, max_keepalive_connections=20),
        follow_redirects=False,  # a redirect is a failed delivery: the signed request goes only where configured
        headers={"user-agent": USER_AGENT},
    )


class Dispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._client = client or make_client(settings)
        self._backoff = backoff or Backoff(
            schedule=settings.webhook_retry_schedule_seconds,
            every=settings.webhook_retry_every_seconds,
            max_attempts=settings.webhook_max_attempts,
            jitter=settings.webhook_retry_jitter,
        )
        # Long enough that an attempt in flight always finishes (or times out) before another may take the row.
        self._lease = timedelta(seconds=settings.webhook_timeout_seconds + 30)
        self._inflight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ the loop
    async def dispatch_once(self) -> int:
        """Claim what is due (within the concurrency bounds) and start sending it; returns how many started."""
        free = self._settings.webhook_max_concurrency - len(self._tasks)
        if free <= 0:
            return 0
        busy = {endpoint: n for endpoint, n in self._inflight.items() if n > 0}
        async with self._sessions.begin() as session:
            claimed = await repo.claim_due(session, free, self._settings.webhook_max_per_endpoint, busy, self._lease)
        for delivery in claimed:
            self._inflight[delivery.endpoint_id] += 1
            task = asyncio.create_task(self._attempt(delivery), name=f"webhook-delivery-{delivery.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def _run(self) -> None:
        while not self._stopping:
            await self._maybe_prune()
            try:
                started = await self.dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # database hiccup: nothing was claimed, or the claim rolled back; try again
                log.exception("webhook dispatcher: claiming due deliveries failed; retrying")
                await asyncio.sleep(self._settings.webhook_poll_seconds)
                continue
            if started:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.webhook_poll_seconds)

    async def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune < PRUNE_EVERY_SECONDS:
            return
        self._last_prune = time.monotonic()
        try:
            async with self._sessions.begin() as session:
                pruned = await repo.prune_deliveries(session, timedelta(days=self._settings.webhook_log_retention_days))
            if pruned:
                log.info("pruned %d delivered or dead webhook deliveries past retention", pruned)
        except Exception:  # housekeeping never stops deliveries
            log.exception("pruning webhook deliveries failed")

    # ------------------------------------------------------------------ one attempt
    async def _attempt(self, delivery: repo.Claimed) -> None:
        try:
            outcome = await self.send(delivery)
            await self._record(delivery, outcome)
        except Exception:  # the outcome is lost: the lease runs out and the delivery is tried again
            log.exception("webhook delivery %s: recording the attempt failed", delivery.id)
        finally:
            self._inflight[delivery.endpoint_id] -= 1
            if self._inflight[delivery.endpoint_id] <= 0:
                del self._inflight[delivery.endpoint_id]
            self._wake.set()  # a slot is free

    def _secrets(self, delivery: repo.Claimed) -> list[str]:
        key = self._settings.secret_key
        found = [crypto.decrypt(delivery.secret_encrypted, key)]
        expires = delivery.previous_secret_expires_at
        if delivery.previous_secret_encrypted and expires is not None and expires > utcnow():
            found.append(crypto.decrypt(delivery.previous_secret_encrypted, key))
        return found

    async def send(self, delivery: repo.Claimed) -> Outcome:
        """One signed POST of the delivery's payload; never raises for the receiver's or the network's faults."""
        body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
        try:
            signing = self._secrets(delivery)
        except crypto.SecretKeyError as exc:
            return Outcome(None, f"not sent: {exc}")
        headers = {"content-type": "application/json", **signature_headers(delivery.event_id, body, signing, utcnow())}
        total = self._settings.webhook_timeout_seconds
        try:
            async with (
                asyncio.timeout(total),
                self._client.stream("POST", delivery.url, content=body.encode(), headers=headers) as response,
            ):
                if 200 <= response.status_code < 300:
                    return Outcome(response.status_code)
                answer = await _start_of(response)
                return Outcome(response.status_code, f"HTTP {response.status_code}" + (f": {answer}" if answer else ""))
        except TimeoutError:
            return Outcome(None, f"no answer within {total:g}s")
        except httpx.TimeoutException as exc:
            return Outcome(None, f"timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500])

    async def _record(self, delivery: repo.Claimed, outcome: Outcome) -> None:
        async with self._sessions.begin() as session:
            if outcome.delivered:
                assert outcome.status_code is not None
                await repo.mark_delivered(session, delivery, outcome.status_code)
                return
            error = outcome.error or "failed"
            if outcome.gone:
                reason = f"the receiver answered 410 Gone at {utcnow().isoformat(timespec='seconds')}"
                await repo.mark_failed(session, delivery, outcome.status_code, f"{error} (endpoint disabled)", None)
                await repo.disable_endpoint(session, delivery.endpoint_id, reason)
                log.warning("webhook endpoint %s disabled: %s", delivery.endpoint_id, reason)
                return
            delay = self._backoff.next_delay(delivery.attempts)
            retry_in = None if delay is None else timedelta(seconds=delay)
            await repo.mark_failed(session, delivery, outcome.status_code, error, retry_in)
        if retry_in is None:
            log.warning(
                "webhook delivery %s (%s to endpoint %s) is dead after %d attempts: %s",
                delivery.id, delivery.event_type, delivery.endpoint_id, delivery.attempts, error,
            )  # fmt: skip

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Claim nothing more; attempts in flight finish (each is bounded by the request timeout)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except TimeoutError:
                self._task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._settings.webhook_timeout_seconds + 5)
        for task in set(self._tasks):  # their rows are retried once the lease runs out
            task.cancel()
        await self._client.aclose()


async def _start_of(response: httpx.Response) -> str:
    """The first bytes of an error answer (for the delivery log), without reading a huge body."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= ERROR_BODY_BYTES:
            break
    return b"".join(chunks)[:ERROR_BODY_BYTES].decode(errors="replace").strip()
