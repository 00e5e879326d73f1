"""Webhooks against the real stack: run events from Kafka become signed HTTP requests to real local receivers.

The webhooks service of the stack is restarted for this module with a back-off of half a second and a 2 s
request timeout, so hours of retries take seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from devstack.stack import Stack
from services.webhooks.dispatcher import Dispatcher
from services.webhooks.errors import NotFoundError
from services.webhooks.schemas import DeliveryStatus, DeliveryView, EndpointUpdate
from services.webhooks.service import WebhookService
from services.webhooks.sources import from_run_event
from shared.contracts import RunStatus, new_message_id
from shared.settings import Settings
from shared.topics import DLQ_REASON_HEADER, RUN_EVENTS, WEBHOOKS_DLQ
from tests.helpers import (
    CLUSTERING_ONLY,
    Tenant,
    configure,
    create_site,
    eventually,
    import_keywords,
    keyword_set,
    publish,
    read_topic,
    start_run,
    wait_run,
)
from tests.integration.webhook_support import Receiver, account_of, run_event, subscribe, webhook_service

FAST = {
    "CONTENTLINE_WEBHOOK_RETRY_SCHEDULE_SECONDS": "[0.5, 0.5, 0.5]",
    "CONTENTLINE_WEBHOOK_RETRY_EVERY_SECONDS": "0.5",
    "CONTENTLINE_WEBHOOK_MAX_ATTEMPTS": "5",
    "CONTENTLINE_WEBHOOK_RETRY_JITTER": "0",
    "CONTENTLINE_WEBHOOK_TIMEOUT_SECONDS": "2",
    "CONTENTLINE_WEBHOOK_CONNECT_TIMEOUT_SECONDS": "1",
    "CONTENTLINE_WEBHOOK_MAX_PER_ENDPOINT": "2",
    "CONTENTLINE_WEBHOOK_POLL_SECONDS": "0.2",
}
MAX_ATTEMPTS = 5


@pytest.fixture(scope="module", autouse=True)
def fast_webhooks(stack: Stack) -> Iterator[None]:
    stack.stop_service("webhooks")
    stack.extra_env.update(FAST)
    stack.start_service("webhooks")
    try:
        yield
    finally:
        stack.stop_service("webhooks")
        for key in FAST:
            stack.extra_env.pop(key, None)
        stack.start_service("webhooks")


@pytest.fixture(scope="module")
def service(stack: Stack, db: async_sessionmaker[AsyncSession]) -> WebhookService:
    return webhook_service(stack, db)


@pytest.fixture(scope="module")
def api(new_tenant: Callable[..., Tenant]) -> httpx.Client:
    """An account of this module's own: endpoints other tests leave on the shared account (the tenancy and
    schema tests create some) would also receive the events these tests count."""
    return new_tenant().client


@pytest.fixture(scope="module")
def site(api: httpx.Client) -> str:
    return create_site(api)


@pytest.fixture(scope="module")
async def account(db: async_sessionmaker[AsyncSession], site: str) -> str:
    return await account_of(db, site)


@pytest.fixture
async def made(service: WebhookService) -> AsyncIterator[list[tuple[str, str]]]:
    """Endpoints a test created; deleted afterwards, so later runs of this account do not call dead receivers."""
    endpoints: list[tuple[str, str]] = []
    yield endpoints
    for account_id, endpoint_id in endpoints:
        with contextlib.suppress(NotFoundError):
            await service.delete_endpoint(account_id, endpoint_id)


async def deliveries(service: WebhookService, account: str, endpoint: str) -> list[DeliveryView]:
    return (await service.list_deliveries(account, endpoint, size=200)).items


async def settled(service: WebhookService, account: str, endpoint: str, n: int = 1) -> list[DeliveryView]:
    """Wait until the endpoint has `n` deliveries and none is still due."""

    async def check() -> list[DeliveryView] | None:
        found = await deliveries(service, account, endpoint)
        done = len(found) == n and all(d.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD) for d in found)
        return found if done else None

    result: list[DeliveryView] = await eventually(check, timeout=60)
    return result


async def test_signed_delivery_is_retried_until_the_receiver_takes_it_exactly_once(
    stack: Stack, service: WebhookService, account: str, site: str, made: list[tuple[str, str]]
) -> None:
    with Receiver(fail_first=3) as receiver:
        endpoint = await subscribe(service, account, receiver, "run.paused", made=made)
        event = run_event(account, site)
        await publish(stack.kafka_bootstrap, RUN_EVENTS, event.model_dump_json().encode(), key=site.encode())

        [delivery] = await settled(service, account, endpoint.id)
        assert delivery.status is DeliveryStatus.DELIVERED
        assert delivery.attempts == 4 and delivery.last_status_code == 200 and delivery.delivered_at is not None

        requests = receiver.for_event(delivery.event_id)
        assert [r.answered for r in requests] == [500, 500, 500, 200]
        assert len(receiver.successes()) == 1  # exactly once in the log of successes
        for request in requests:  # every attempt is signed, with its own timestamp
            body = Webhook(endpoint.secret).verify(request.body, request.headers)
            assert body["type"] == "run.paused" and body["id"] == delivery.event_id
            assert body["account_id"] == account
            assert body["data"]["run_id"] == event.run_id and body["data"]["status"] == "paused"
        gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
        assert all(gap >= 0.4 for gap in gaps), gaps  # the back-off schedule, not a hot loop


async def test_a_redelivered_run_event_makes_no_second_delivery(
    stack: Stack, service: WebhookService, account: str, site: str, made: list[tuple[str, str]]
) -> None:
    with Receiver() as receiver:
        endpoint = await subscribe(service, account, receiver, "run.failed", made=made)
        failed = run_event(account, site, "failed", RunStatus.FAILED, 5, "stage 5: all items failed")
        marker = run_event(account, site, "failed", RunStatus.FAILED, 2, "the marker")
        body = failed.model_dump_json().encode()
        for record in (body, body, marker.model_dump_json().encode()):  # one partition (the site): in order
            await publish(stack.kafka_bootstrap, RUN_EVENTS, record, key=site.encode())

        # Once the marker is delivered, the duplicate before it has been consumed too.
        found = await settled(service, account, endpoint.id, n=2)
        assert {d.status for d in found} == {DeliveryStatus.DELIVERED}
        runs = sorted(r.json["data"]["run_id"] for r in receiver.successes())
        assert runs == sorted([failed.run_id, marker.run_id])
        assert len(receiver.requests) == 2


async def test_a_receiver_that_never_answers_delays_only_its_own_deliveries(
    stack: Stack, service: WebhookService, account: str, site: str, made: list[tuple[str, str]]
) -> None:
    with Receiver(hang=True) as dead, Receiver() as healthy:
        stuck = await subscribe(service, account, dead, "run.paused", made=made)
        fine = await subscribe(service, account, healthy, "run.paused", made=made)
        events = [run_event(account, site) for _ in range(6)]
        started = time.monotonic()
        for event in events:
            await publish(stack.kafka_bootstrap, RUN_EVENTS, event.model_dump_json().encode(), key=site.encode())

        await eventually(lambda: len(healthy.successes()) == len(events), timeout=60)
        took = time.monotonic() - started
        # The dead receiver holds each request for the whole 2 s timeout, two at a time: sending in turn would
        # put the healthy receiver's events behind 6 × 2 s / 2 of waiting and more with retries.
        assert took < 15, took
        assert sorted(r.json["data"]["run_id"] for r in healthy.successes()) == sorted(e.run_id for e in events)
        # The dead receiver never has more than its per-endpoint bound (2) of requests open at once: a request
        # stays open for the 2 s timeout, so no three arrive within 1.5 s of each other.
        arrivals = sorted(r.at for r in dead.requests)
        assert arrivals and max(sum(1 for u in arrivals if t - 1.5 <= u <= t) for t in arrivals) <= 2
        stuck_log = await deliveries(service, account, stuck.id)
        assert len(stuck_log) == len(events)
        assert not any(d.status is DeliveryStatus.DELIVERED for d in stuck_log)

        async def timed_out() -> bool:
            return any(d.last_error == "no answer within 2s" for d in await deliveries(service, account, stuck.id))

        await eventually(timed_out, timeout=30)
        assert {d.status for d in await deliveries(service, account, fine.id)} == {DeliveryStatus.DELIVERED}


async def test_a_dead_endpoints_long_backlog_does_not_hide_other_endpoints(
    stack: Stack, service: WebhookService, account: str, site: str, made: list[tuple[str, str]]
) -> None:
    with Receiver(hang=True) as dead, Receiver() as healthy:
        stuck = await subscribe(service, account, dead, "run.stopped_budget", made=made)
        fine = await subscribe(service, account, healthy, "run.paused", made=made)
        # 1000 deliveries due at once for the dead endpoint, queued through the service like any source event
        # (a burst of events, or a backlog after an outage), ahead of the healthy endpoint's one.
        backlog = [e for _ in range(1000) for e in from_run_event(run_event(account, site, "completed",
                   RunStatus.COMPLETED, 4))]  # fmt: skip
        assert await service.enqueue("webhooks.test-backlog", new_message_id(), backlog) == len(backlog)
        event = run_event(account, site)
        started = time.monotonic()
        await publish(stack.kafka_bootstrap, RUN_EVENTS, event.model_dump_json().encode(), key=site.encode())
        [delivered] = await settled(service, account, fine.id)
        assert delivered.status is DeliveryStatus.DELIVERED and time.monotonic() - started < 15
        assert len(dead.requests) < 50  # two at a time, 2 s each: the dead endpoint got through a few only
        page = await service.list_deliveries(account, stuck.id, DeliveryStatus.DELIVERED)
        assert page.total == 0


async def test_several_dispatchers_never_send_one_delivery_twice(
    stack: Stack, service: WebhookService, db: async_sessionmaker[AsyncSession], account: str, site: str,
    made: list[tuple[str, str]],
) -> None:  # fmt: skip
    settings = Settings(database_url=stack.database_url, secret_key=SecretStr(stack.secret_key),
                        webhook_max_per_endpoint=8, webhook_poll_seconds=0.05)  # fmt: skip
    with Receiver() as receiver:
        endpoint = await subscribe(service, account, receiver, "run.failed", made=made)
        events = [e for _ in range(150) for e in from_run_event(run_event(account, site, "failed", RunStatus.FAILED))]
        # Two more replicas' dispatchers in this process, racing the service's own for the same rows.
        replicas = [Dispatcher(db, settings) for _ in range(2)]
        for replica in replicas:
            replica.start()
        try:
            assert await service.enqueue("webhooks.test-replicas", new_message_id(), events) == len(events)
            await settled(service, account, endpoint.id, n=len(events))
        finally:
            for replica in replicas:
                await replica.stop()
        ids = [r.event_id for r in receiver.requests]
        assert len(ids) == len(set(ids)) == len(events)
        log = await deliveries(service, account, endpoint.id)
        assert {(d.status, d.attempts) for d in log} == {(DeliveryStatus.DELIVERED, 1)}, [
            (d.attempts, d.last_error) for d in log if d.attempts != 1
        ]


async def test_a_receiver_that_never_answers_does_not_delay_a_run(
    api: httpx.Client, service: WebhookService, account: str, made: list[tuple[str, str]]
) -> None:
    async def timed_run() -> tuple[str, float]:
        site = create_site(api)
        import_keywords(api, site, keyword_set(2, 3))
        configure(api, site, stage_enabled=CLUSTERING_ONLY)
        started = time.monotonic()
        view = wait_run(api, start_run(api, site)["run_id"], timeout=120)
        assert view["status"] == "completed", view
        return str(view["run_id"]), time.monotonic() - started

    _, baseline = await timed_run()
    with Receiver(hang=True) as dead:
        endpoint = await subscribe(service, account, dead, "run.completed", "run.failed", made=made)
        run_id, took = await timed_run()
        assert took < baseline * 2 + 5, (took, baseline)

        # The run's completion reached the dead receiver, which never answered; the delivery is not delivered.
        async def held() -> DeliveryView | None:
            for d in await deliveries(service, account, endpoint.id):
                if d.event_type == "run.completed" and d.attempts >= 1 and d.last_error:
                    return d
            return None

        delivery = await eventually(held, timeout=60)
        assert delivery.status is not DeliveryStatus.DELIVERED
        arrived = [r for r in dead.for_event(delivery.event_id) if r.answered is None]
        assert arrived and arrived[0].json["data"]["run_id"] == run_id


async def test_gone_disables_the_endpoint_and_exhausted_deliveries_are_dead_until_retried(
    stack: Stack, service: WebhookService, account: str, site: str, made: list[tuple[str, str]]
) -> None:
    with Receiver(status=410) as gone, Receiver(status=503) as broken:
        closed = await subscribe(service, account, gone, "run.paused", made=made)
        failing = await subscribe(service, account, broken, "run.paused", made=made)
        await publish(stack.kafka_bootstrap, RUN_EVENTS, run_event(account, site).model_dump_json().encode(),
                      key=site.encode())  # fmt: skip

        [dead_gone] = await settled(service, account, closed.id)
        assert dead_gone.status is DeliveryStatus.DEAD and dead_gone.attempts == 1
        assert dead_gone.last_status_code == 410 and "endpoint disabled" in (dead_gone.last_error or "")
        disabled = await service.get_endpoint(account, closed.id)
        assert not disabled.is_active and "410 Gone" in (disabled.disabled_reason or "")

        [exhausted] = await settled(service, account, failing.id)
        assert exhausted.status is DeliveryStatus.DEAD and exhausted.attempts == MAX_ATTEMPTS
        assert exhausted.last_status_code == 503 and exhausted.last_error == "HTTP 503: no"
        assert len(broken.requests) == MAX_ATTEMPTS

        # A disabled endpoint gets no new deliveries; the broken receiver is fixed and its dead delivery retried.
        broken.status = 200
        later = run_event(account, site)
        await publish(stack.kafka_bootstrap, RUN_EVENTS, later.model_dump_json().encode(), key=site.encode())
        retried = await service.retry_delivery(account, failing.id, exhausted.id)
        assert retried.status is DeliveryStatus.PENDING and retried.attempts == 0
        found = await settled(service, account, failing.id, n=2)
        assert {d.status for d in found} == {DeliveryStatus.DELIVERED}
        assert len(await deliveries(service, account, closed.id)) == 1

        # Re-enabling clears the reason; the endpoint receives again.
        gone.status = 200
        await service.update_endpoint(account, closed.id, EndpointUpdate(is_active=True))
        again = await service.get_endpoint(account, closed.id)
        assert again.is_active and again.disabled_reason is None


async def test_an_unreadable_run_event_is_dead_lettered_and_the_consumer_moves_on(
    stack: Stack, service: WebhookService, account: str, site: str, made: list[tuple[str, str]]
) -> None:
    with Receiver() as receiver:
        endpoint = await subscribe(service, account, receiver, "run.paused", made=made)
        garbage = b'{"not": "a run event", "marker": "' + site.encode() + b'"}'
        await publish(stack.kafka_bootstrap, RUN_EVENTS, garbage, key=site.encode())
        after = run_event(account, site)
        await publish(stack.kafka_bootstrap, RUN_EVENTS, after.model_dump_json().encode(), key=site.encode())

        [delivery] = await settled(service, account, endpoint.id)
        assert delivery.status is DeliveryStatus.DELIVERED
        records = await read_topic(stack.kafka_bootstrap, WEBHOOKS_DLQ, lambda r: r.value == garbage, 0.5)
        assert len(records) == 1
        reason = dict(records[0].headers)[DLQ_REASON_HEADER].decode()
        assert reason.startswith("invalid message:") and "run_id" in reason


async def test_test_events_and_secret_rotation(
    service: WebhookService, account: str, made: list[tuple[str, str]]
) -> None:
    with Receiver() as receiver:
        endpoint = await subscribe(service, account, receiver, "run.completed", made=made)
        first = await service.send_test(account, endpoint.id)
        assert first.event_type == "webhook.test" and first.status is DeliveryStatus.PENDING
        await settled(service, account, endpoint.id)
        [request] = receiver.for_event(first.event_id)
        body = Webhook(endpoint.secret).verify(request.body, request.headers)
        assert body["type"] == "webhook.test" and body["data"]["endpoint_id"] == endpoint.id

        rotated = await service.rotate_secret(account, endpoint.id)
        assert rotated.secret != endpoint.secret and rotated.previous_secret_valid_until is not None
        assert (await service.reveal_secret(account, endpoint.id)).secret == rotated.secret
        second = await service.send_test(account, endpoint.id)
        await settled(service, account, endpoint.id, n=2)
        [request] = receiver.for_event(second.event_id)
        assert len(request.headers["webhook-signature"].split(" ")) == 2  # new and previous secret, for a while
        for secret in (rotated.secret, endpoint.secret):
            Webhook(secret).verify(request.body, request.headers)

        page = await service.list_deliveries(account, endpoint.id, DeliveryStatus.DELIVERED, page=2, size=1)
        assert page.total == 2 and [d.id for d in page.items] == [first.id]  # newest first
        assert (await service.list_deliveries(account, endpoint.id, DeliveryStatus.DEAD)).total == 0
        detail = await service.get_delivery(account, endpoint.id, second.id)
        assert detail.payload["id"] == second.event_id and detail.payload["type"] == "webhook.test"


async def test_a_deleted_endpoint_takes_its_log_and_gets_nothing_more(
    stack: Stack, service: WebhookService, account: str, site: str, made: list[tuple[str, str]]
) -> None:
    with Receiver() as receiver:
        endpoint = await subscribe(service, account, receiver, "run.paused", made=made)
        await service.send_test(account, endpoint.id)
        await settled(service, account, endpoint.id)
        await service.delete_endpoint(account, endpoint.id)
        with pytest.raises(NotFoundError):
            await service.list_deliveries(account, endpoint.id)
        # A second endpoint on the same receiver witnesses that the next event was consumed and delivered.
        witness = await subscribe(service, account, receiver, "run.paused", made=made)
        event = run_event(account, site)
        await publish(stack.kafka_bootstrap, RUN_EVENTS, event.model_dump_json().encode(), key=site.encode())
        await settled(service, account, witness.id)
        paused = [r for r in receiver.requests if r.json["type"] == "run.paused"]
        assert len(paused) == 1 and paused[0].json["data"]["run_id"] == event.run_id
