"""Topic and dead-letter inspection through the operator REST routes and the `contentline` CLI, against the real
broker: topic counts, exact lag of a stopped group, a poisoned record with its reason, a replay whose effect
happens once, the tail, and the errors (404 unknown topic or record, 422 bad filter, 403 for an account key)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contentline_cli.session import EXIT_AUTH, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_USAGE
from devstack.stack import Stack
from shared.contracts import KeywordBatchIngested, KeywordIn
from shared.db.models import Account, Keyword, Site
from shared.topics import KEYWORDS_INGEST, KEYWORDS_INGEST_DLQ
from tests.cli_runner import cli, json_of, ok
from tests.helpers import Tenant, eventually, publish
from tests.integration.test_inspection import COMMITTED, PRODUCED, group_that_committed, new_topic, produce


def operator_key(operator: httpx.Client) -> str:
    return str(operator.headers["Authorization"]).removeprefix("Bearer ")


async def test_topics_through_the_route_and_the_cli_count_what_was_produced(
    stack: Stack, operator: httpx.Client, tenant: Tenant
) -> None:
    topic = await new_topic(stack.kafka_bootstrap, suffix="-topics")
    await produce(stack.kafka_bootstrap, topic, PRODUCED)

    one = operator.get(f"/ops/topics/{topic}")
    assert one.status_code == 200, one.text
    assert {p["partition"]: p["messages"] for p in one.json()["partitions"]} == PRODUCED
    assert one.json()["messages"] == sum(PRODUCED.values())
    assert operator.get("/ops/topics/inspect-test-no-such-topic").status_code == 404
    assert tenant.client.get("/ops/topics").status_code == 403  # an account key is not the operator's

    listed = {t["name"]: t for t in json_of(cli(stack, "topics", "--json", operator_key=operator_key(operator)))}
    assert KEYWORDS_INGEST in listed and all(len(listed[t]["partitions"]) == 6 for t in (KEYWORDS_INGEST,))
    table = ok(cli(stack, "topics", "--partitions", operator_key=operator_key(operator)))
    assert KEYWORDS_INGEST_DLQ in table
    refused = cli(stack, "topics", key=tenant.key)  # no operator key: the account key is refused
    assert refused.exit_code == EXIT_AUTH and "operator key" in refused.stderr


async def test_lag_of_a_stopped_group_is_exact_through_the_route_and_the_cli(
    stack: Stack, operator: httpx.Client
) -> None:
    topic = await new_topic(stack.kafka_bootstrap, suffix="-lag")
    await produce(stack.kafka_bootstrap, topic, PRODUCED)
    group, _, _ = await group_that_committed(stack.kafka_bootstrap, topic, COMMITTED)
    expected = {p: (COMMITTED[p], n, n - COMMITTED[p]) for p, n in PRODUCED.items()}

    (route,) = operator.get("/ops/lag", params={"group": group}).json()
    assert route["state"] == "Empty" and route["members"] == [] and route["exists"]
    assert {r["partition"]: (r["committed"], r["end"], r["lag"]) for r in route["partitions"]} == expected
    assert route["total_lag"] == sum(PRODUCED.values()) - sum(COMMITTED.values())

    key = operator_key(operator)
    (shown,) = json_of(cli(stack, "lag", "--group", group, "--json", operator_key=key))
    assert shown == route
    table = ok(cli(stack, "lag", "-g", group, operator_key=key))
    assert f"{group}: Empty, 0 member(s), total lag {route['total_lag']}" in table
    (unknown,) = json_of(cli(stack, "lag", "--group", f"no-such-{uuid.uuid4().hex}", "--json", operator_key=key))
    assert unknown["exists"] is False


async def test_a_poisoned_record_is_listed_with_its_reason_and_a_replay_after_the_fix_takes_effect_once(
    stack: Stack, operator: httpx.Client, db: async_sessionmaker[AsyncSession]
) -> None:
    key = operator_key(operator)
    account, site = f"cli-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:16]
    batch = KeywordBatchIngested(
        account_id=account, site_id=site, keywords=[KeywordIn(keyword=f"replayed {i}") for i in range(3)]
    )
    await publish(stack.kafka_bootstrap, KEYWORDS_INGEST, batch.model_dump_json().encode(), key=site.encode())

    async def listed() -> list[dict[str, object]]:
        return list(json_of(cli(stack, "dlq", "list", KEYWORDS_INGEST_DLQ, "--key", site, "--json", operator_key=key)))

    (letter,) = await eventually(listed, timeout=60)
    assert letter["reason"] == f"site {site!r} does not exist" and letter["source_topic"] == KEYWORDS_INGEST
    assert letter["message_id"] == batch.message_id and letter["replayable"]
    ref = letter["ref"]
    record = f"{ref['topic']}/{ref['partition']}/{ref['offset']}"  # type: ignore[index]
    table = ok(cli(stack, "dlq", "list", "--reason", "DOES NOT EXIST", "--since", "1h", operator_key=key))
    assert record in table
    shown = ok(cli(stack, "dlq", "show", record, operator_key=key))
    assert "does not exist" in shown and batch.message_id in shown and "x-dead-letter-reason" in shown

    async def keywords() -> int:
        async with db() as s:
            return int(await s.scalar(select(func.count()).select_from(Keyword).where(Keyword.site_id == site)) or 0)

    one = ("--partition", str(ref["partition"]), "--offset", str(ref["offset"]))  # type: ignore[index]
    dry = cli(stack, "dlq", "replay", KEYWORDS_INGEST_DLQ, *one, operator_key=key)
    assert "Dry run: nothing was sent" in ok(dry) and "--yes" in dry.stderr and "would replay" in dry.stderr

    async with db.begin() as s:  # the cause is fixed: the site exists now
        s.add(Account(id=account, name="cli replay test"))
        await s.flush()
        s.add(Site(id=site, account_id=account, name="cli replay test", domain="example.com"))
    assert await keywords() == 0  # the dry run sent nothing

    sent = json_of(cli(stack, "dlq", "replay", KEYWORDS_INGEST_DLQ, *one, "--yes", "--json", operator_key=key))
    assert [i["status"] for i in sent["items"]] == ["replayed"] and not sent["dry_run"]
    assert await eventually(lambda: _at_least(keywords, 3), timeout=60) == 3

    again = json_of(cli(stack, "dlq", "replay", KEYWORDS_INGEST_DLQ, *one, "--yes", "--json", operator_key=key))
    assert [i["status"] for i in again["items"]] == ["already_replayed"]
    forced = json_of(cli(stack, "dlq", "replay", KEYWORDS_INGEST_DLQ, *one, "--yes", "--force", "--json",
                         operator_key=key))  # fmt: skip
    assert [i["status"] for i in forced["items"]] == ["replayed"]
    time.sleep(3)  # the forced copy is handled (dropped by the inbox) meanwhile
    assert await keywords() == 3  # its effect happened once


async def _at_least(count: object, n: int) -> int | None:
    value = await count()  # type: ignore[operator]
    return int(value) if value >= n else None


def test_bad_filters_are_422_naming_the_field_and_unknown_records_404(
    stack: Stack, operator: httpx.Client
) -> None:
    r = operator.get("/ops/dlq", params={"offset": 3})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.offset", r.text
    r = operator.post(f"/ops/dlq/{KEYWORDS_INGEST_DLQ}/replay", json={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.all", r.text
    r = operator.post(f"/ops/dlq/{KEYWORDS_INGEST}/replay", json={"all": True})
    assert r.status_code == 422 and "not a dead-letter topic" in r.json()["detail"], r.text
    r = operator.post("/ops/dlq/inspect-test-nothing.dlq/replay", json={"all": True})
    assert r.status_code == 404, r.text
    r = operator.get(f"/ops/dlq/{KEYWORDS_INGEST_DLQ}/0/999999999")
    assert r.status_code == 404 and "no record at" in r.json()["detail"]
    r = operator.get("/ops/dlq", params={"since": "2026-12-01T10:00:00Z", "until": "2026-11-01T10:00:00Z"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.since", r.text
    r = operator.get(f"/ops/topics/{KEYWORDS_INGEST}/tail", params={"cursor": "0:1,x"})
    assert r.status_code == 422

    key = operator_key(operator)
    missing = cli(stack, "dlq", "show", f"{KEYWORDS_INGEST_DLQ}/0/999999999", operator_key=key)
    assert missing.exit_code == EXIT_NOT_FOUND and missing.stderr.startswith("error: no record at")
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = cli(stack, "dlq", "list", "--offset", "3", operator_key=key)
    assert bad.exit_code == EXIT_INVALID and bad.stderr.strip() == (
        "error: offset: needs a partition too (an offset is only unique within its partition) (HTTP 422)"
    )
    assert cli(stack, "dlq", "show", "not-a-record", operator_key=key).exit_code == EXIT_USAGE
    assert cli(stack, "dlq", "list", "--since", "yesterday", operator_key=key).exit_code == EXIT_USAGE


async def test_tail_prints_what_is_there_then_follows_new_records(stack: Stack, operator: httpx.Client) -> None:
    key = operator_key(operator)
    topic = await new_topic(stack.kafka_bootstrap, partitions=2, suffix="-tail")
    await produce(stack.kafka_bootstrap, topic, {0: 3, 1: 2})
    lines = ok(cli(stack, "tail", topic, "--no-follow", "--last", "2", operator_key=key)).splitlines()
    assert len(lines) == 4 and all(f" {topic}[" in line and "raw: record" in line for line in lines)

    page = operator.get(f"/ops/topics/{topic}/tail", params={"last": 0}).json()
    assert page["lines"] == [] and page["at_end"] and page["cursor"] == "0:3,1:2"

    followed: dict[str, object] = {}

    def follow() -> None:
        followed["result"] = cli(stack, "tail", topic, "--last", "0", "--limit", "2", "--json", operator_key=key)

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(2)  # the CLI is waiting in its long poll
    await produce(stack.kafka_bootstrap, topic, {1: 2})
    thread.join(60)
    assert not thread.is_alive()
    result = followed["result"]
    records = [json.loads(line) for line in ok(result).splitlines()]  # type: ignore[arg-type]
    assert [(r["ref"]["partition"], r["ref"]["offset"]) for r in records] == [(1, 2), (1, 3)]
    assert records[0]["summary"] == "raw: record 0" and records[0]["contract"] is None
