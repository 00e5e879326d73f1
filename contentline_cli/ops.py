"""Operator commands over the operator REST routes (/ops/*): `topics`, `lag`, `dlq list|show|replay`, `tail`,
`outbox parked|retry`. They send the operator key (see config.py).

`tail` goes through the API too, not straight to Kafka: one way in with one key, the same decoding code as
the routes, and it works where only the API is reachable (docker compose publishes nothing else). It follows
a topic by long polls with a cursor, so no record is missed between two requests.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from contentline_cli.session import (
    EXIT_USAGE,
    JsonOption,
    client_for,
    console,
    err_console,
    fail,
    fields,
    print_json,
    table,
)

dlq_app = typer.Typer(no_args_is_help=True, help="(operator) Dead letters: list, show, replay (a dry run first).")
outbox_app = typer.Typer(no_args_is_help=True, help="(operator) Outbox rows the broker refused for good.")

_AGO = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str | None, name: str) -> str | None:
    """ISO 8601 (a time without a zone is local time) or an age: 30m, 2h, 7d ago. As ISO with a zone."""
    if text is None:
        return None
    if match := _AGO.fullmatch(text.strip()):
        return (datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})).isoformat()
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--{name} {text!r}: expected a time like 2026-12-01T10:00 or an age (30m, 2h, 7d)") from None
    return (when if when.tzinfo else when.astimezone()).isoformat()


# ---------------------------------------------------------------------- topics and lag
def topics(
    ctx: typer.Context,
    partitions: Annotated[bool, typer.Option("--partitions", "-p", help="One row per partition.")] = False,
    as_json: JsonOption = False,
) -> None:
    """(operator) Every contentline topic: partitions, offsets and message counts (end - beginning)."""
    with client_for(ctx, operator=True) as client:
        data = client.call("GET", "/ops/topics")
    if as_json:
        print_json(data)
        return
    if partitions:
        rows = [{"topic": t["name"], **p} for t in data for p in t["partitions"]]
        table(rows, ["topic", "partition", "leader", "beginning", "end", "messages"])
        return
    rows = [{**t, "partitions": len(t["partitions"]), "end": sum(p["end"] for p in t["partitions"]),
             "status": "ok" if t["exists"] and not t["error"] else t["error"]} for t in data]  # fmt: skip
    table(rows, ["name", "partitions", "messages", ("end", "end offsets"), "status"], title="Topics")


def lag(
    ctx: typer.Context,
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="Only this group (repeatable).")] = None,
    topic: Annotated[list[str] | None, typer.Option("--topic", "-t", help="Only this topic (repeatable).")] = None,
    as_json: JsonOption = False,
) -> None:
    """(operator) Per consumer group, topic and partition: committed offset, end offset, lag, and who holds it."""
    with client_for(ctx, operator=True) as client:
        data = client.call("GET", "/ops/lag", params={"group": group or [], "topic": topic or []})
    if as_json:
        print_json(data)
        return
    for g in data:
        title = f"{g['group']}: {g['state']}, {len(g['members'])} member(s), total lag {g['total_lag']}"
        if not g["exists"]:
            console.print(f"[yellow]{g['group']}: no such consumer group[/]")
            continue
        rows = [{**p, "holder": f"{p['client_id']}@{p['host']}" if p["member_id"] else None} for p in g["partitions"]]
        table(rows, ["topic", "partition", "committed", "end", "lag", "holder"], title=title,
              empty="no committed offsets")


# ---------------------------------------------------------------------- dead letters
def _filters(partition: int | None, offset: int | None, reason: str | None, source_topic: str | None,
             key: str | None, since: str | None, until: str | None) -> dict[str, Any]:  # fmt: skip
    given = {"partition": partition, "offset": offset, "reason_contains": reason, "source_topic": source_topic,
             "key": key, "since": parse_time(since, "since"), "until": parse_time(until, "until")}  # fmt: skip
    return {k: v for k, v in given.items() if v is not None}


Partition = Annotated[int | None, typer.Option(min=0, help="Only this partition.")]
Offset = Annotated[int | None, typer.Option(min=0, help="With --partition: one record.")]
Reason = Annotated[str | None, typer.Option(help="The reason contains this (any case).")]
Source = Annotated[str | None, typer.Option("--source-topic", help="Only records from this topic.")]
Key = Annotated[str | None, typer.Option(help="Only records with this key (our keys are site ids).")]
Since = Annotated[str | None, typer.Option(help="Records from this time on: ISO 8601, or an age (30m, 2h, 7d).")]
Until = Annotated[str | None, typer.Option(help="Records before this time (ISO 8601 or an age).")]


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Argument(help="A .dlq topic (default: all of them).")] = None,
    partition: Partition = None, offset: Offset = None, reason: Reason = None, source_topic: Source = None,
    key: Key = None, since: Since = None, until: Until = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="The newest N matches.")] = 100,
    replays: Annotated[bool, typer.Option("--replays", help="Also look up earlier replays.")] = False,
    as_json: JsonOption = False,
) -> None:
    """(operator) Dead letters with reason, source topic, key, size and whether they can be replayed (--json: with
    message id and the start of the body; `dlq show` for one whole)."""
    with client_for(ctx, operator=True) as client:  # a bad --since is a usage error (exit 2) like the others
        params = _filters(partition, offset, reason, source_topic, key, since, until)
        params |= {"limit": limit, "check_replays": replays, "body_chars": 200} | ({"topic": topic} if topic else {})
        data = client.call("GET", "/ops/dlq", params=params)
    if as_json:
        print_json(data)
        return
    rows = [{
        "record": f"{d['ref']['topic']}/{d['ref']['partition']}/{d['ref']['offset']}", "time": d["timestamp"],
        "reason": d["reason"], "source": (d["source_topic"] or "").removeprefix("contentline."), "key": d["key"],
        "size": f"{d['body']['size']:,} B" + (" (cut)" if d["body"]["truncated"] else ""),
        "replay": ("replayed" if d["replays"] else "yes") if d["replayable"] else "no",
    } for d in data]  # fmt: skip
    table(rows, ["record", "time", "reason", "source", "key", "size", "replay"],
          title="Dead letters (show one with `contentline dlq show RECORD`)", empty="no dead letters match")


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    record: Annotated[str, typer.Argument(help="TOPIC/PARTITION/OFFSET, as `dlq list` prints it.")],
    body_chars: Annotated[int, typer.Option(min=0, max=1_000_000, help="Cut the body here.")] = 20_000,
    as_json: JsonOption = False,
) -> None:
    """(operator) One dead letter: reason, headers, the whole readable body, and earlier replays."""
    topic, partition, offset = _ref(record)
    with client_for(ctx, operator=True) as client:
        data = client.call("GET", f"/ops/dlq/{topic}/{partition}/{offset}", params={"body_chars": body_chars})
    if as_json:
        print_json(data)
        return
    body = data["body"]
    fields({**data, "record": record, "size": f"{body['size']:,} bytes ({body['stored_bytes']:,} stored"
            f"{', ' + body['encoding'] if body['encoding'] else ''})", "truncated": body["truncated"],
            "replayed to": [f"{m['at']['topic']}/{m['at']['partition']}/{m['at']['offset']}" for m in data["replays"]]},
           ["record", "timestamp", "reason", "source_topic", "key", "message_id", "contract", "size", "truncated",
            "replayable", "not_replayable_because", "replayed to"])  # fmt: skip
    fields(data["headers"], title="Headers")
    console.print("[bold]Body[/]" + (" (cut)" if body["text_truncated"] else ""))
    console.print(body["text"], markup=False, highlight=False)


def _ref(record: str) -> tuple[str, int, int]:
    topic, _, rest = record.rpartition("/")
    topic, _, partition = topic.rpartition("/")
    if not topic or not partition.isdigit() or not rest.isdigit():
        fail([f"{record!r}: expected TOPIC/PARTITION/OFFSET, e.g. contentline.keywords.ingest.dlq/2/17"], EXIT_USAGE)
    return topic, int(partition), int(rest)


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The .dlq topic to replay from.")],
    partition: Partition = None, offset: Offset = None, reason: Reason = None, source_topic: Source = None,
    key: Key = None, since: Since = None, until: Until = None,
    everything: Annotated[bool, typer.Option("--all", help="Select every record (no filter).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really send (default: a dry run).")] = False,
    force: Annotated[bool, typer.Option(help="Send again what was replayed before.")] = False,
    as_json: JsonOption = False,
) -> None:
    """(operator) Send dead letters back to their original topic once the cause is fixed: a dry run unless
    --yes. They keep their message id, so idempotent consumers drop what they already handled."""
    with client_for(ctx, operator=True) as client:
        body = _filters(partition, offset, reason, source_topic, key, since, until)
        body |= {"all": everything, "dry_run": not yes, "force": force}
        report = client.call("POST", f"/ops/dlq/{topic}/replay", json=body)
    if as_json:
        print_json(report)
        return
    rows = [{**i, "record": f"{i['source']['topic']}/{i['source']['partition']}/{i['source']['offset']}"}
            for i in report["items"]]  # fmt: skip
    table(rows, ["record", "status", "message_id", "detail"],
          title="Dry run: nothing was sent" if report["dry_run"] else "Replayed", empty="no dead letter matches")
    counts: dict[str, int] = {}
    for item in report["items"]:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
    if report["dry_run"] and counts.get("would_replay"):
        err_console.print(f"{summary}. Send them with the same command and --yes.")
    elif summary:
        err_console.print(summary + ". Check `contentline dlq list` for records that failed again.")


# ---------------------------------------------------------------------- tail
def render_line(line: dict[str, Any]) -> str:
    ref = line["ref"]
    when = line["timestamp"][11:23] if line.get("timestamp") else "--:--:--"
    key = f" key={line['key']}" if line.get("key") else ""
    return f"{when} {ref['topic']}[{ref['partition']}]@{ref['offset']}{key} {line['summary']}"


def tail(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Any topic, e.g. contentline.run.events (see `contentline topics`).")],
    last: Annotated[int, typer.Option(min=0, max=1000, help="Start with the last N records of each partition.")] = 10,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", "-f", help="Keep printing new records.")] = True,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many records.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per record (decoded body in `data`).")]
    = False,
) -> None:
    """(operator) A topic's records decoded with our contracts, one line each, followed (Ctrl-C stops)."""
    cursor: str | None = None
    printed = 0
    with client_for(ctx, operator=True) as client:
        try:
            while limit is None or printed < limit:
                params: dict[str, Any] = {"limit": min(1000, (limit or 1000) - printed), "last": last,
                                          "follow": follow and cursor is not None, "wait": 10}  # fmt: skip
                if cursor:
                    params["cursor"] = cursor
                page = client.call("GET", f"/ops/topics/{topic}/tail", params=params)
                for line in page["lines"]:
                    print(json.dumps(line, ensure_ascii=False) if as_json else render_line(line), flush=True)
                printed += len(page["lines"])
                cursor = page["cursor"]
                if not follow and page["at_end"]:
                    break
        except KeyboardInterrupt:
            err_console.print(f"\nstopped after {printed} record(s); read on from cursor {cursor}")


# ---------------------------------------------------------------------- outbox
@outbox_app.command("parked")
def outbox_parked(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
                  as_json: JsonOption = False) -> None:
    """Messages the broker refused for good, with the reason, oldest first."""
    with client_for(ctx, operator=True) as client:
        data = client.call("GET", "/ops/outbox/parked", params={"limit": limit})
    if as_json:
        print_json(data)
    else:
        table(data, ["id", "producer", "topic", "key", "send_attempts", "last_error", "parked_at"],
              empty="nothing is parked")


@outbox_app.command("retry")
def outbox_retry(ctx: typer.Context, row_id: int, as_json: JsonOption = False) -> None:
    """Hand a parked row back to its relay (once its cause is fixed)."""
    with client_for(ctx, operator=True) as client:
        data = client.call("POST", f"/ops/outbox/{row_id}/retry")
    print_json(data) if as_json else console.print(f"outbox row {row_id} ({data['topic']}) handed back to its relay")
