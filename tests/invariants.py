"""What must hold in the database after a run, whatever happened to the processes during it.

`check_run(conn, run_id)` reads PostgreSQL only (no API, no Kafka) and returns every violation found, so a
test asserts `== []` and prints the list when it is not. It is meant for any test that ends a run: the
fault suite (tests/chaos) after each kill, an e2e test after a clean run. Scope: the run, its site (every
row of the site, whichever run wrote it) and its account (the ledger).

The invariants (README "Fault suite"):
- terminal: the run is completed, failed (with a reason) or cancelled; no batch of it pending or in flight,
  no stage result still running, the site holds no active run (so no credits stay reserved);
- items, one truth each: every item a batch of the run carried has its stage's output (keyword → cluster,
  cluster → `ideas_per_cluster` ideas, idea → task, task → draft, draft → its image prompts, prompt →
  image) or is recorded failed (an outlier keyword is a failure with that reason), never both, never
  neither; every output row of the site comes from an item of a settled ("done") batch, so no work
  was done that the orchestrator did not record and charge; no item in two batches of one stage;
- no orphans and no duplicates: no cluster without keywords, cluster sizes equal their members, rows of
  the site hang off rows of the same site, an image belongs to its prompt's draft, image files exist with
  their size and checksum and no stray file sits in the site's media folder, one set of prompt positions
  per draft;
- money: the account's ledger sums to its balance (and the last row's `balance_after` is the balance);
  every debit of the run is keyed by one of its batches; the run's debits = the sum of its per-stage
  credits = `runs.total_credits_used`; each stage's counters equal what its batches recorded;
- messages: every outbox row of the run older than `outbox_grace` seconds was relayed (none parked).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

TERMINAL = ("completed", "failed", "cancelled")
SETTLED = ("done", "failed", "cancelled", "skipped")
# The orchestrator keeps at most this many failures per stage result (services/orchestrator MAX_RECORDED_FAILURES).
MAX_RECORDED_FAILURES = 200

# Stage → SQL of (input item id, output row id) pairs for a site: what "the item has its output" means.
OUTPUTS: dict[int, str] = {
    1: "SELECT id AS item, cluster_id AS out FROM keywords WHERE site_id = :site AND cluster_id IS NOT NULL",
    2: "SELECT cluster_id AS item, id AS out FROM ideas WHERE site_id = :site",
    3: "SELECT idea_id AS item, id AS out FROM writer_tasks WHERE site_id = :site",
    4: "SELECT task_id AS item, id AS out FROM drafts WHERE site_id = :site",
    5: "SELECT draft_id AS item, id AS out FROM image_prompts WHERE site_id = :site",
    6: "SELECT prompt_id AS item, id AS out FROM images WHERE site_id = :site",
}
# Child table → (its parent table, the column pointing at it): both rows must belong to one site.
PARENTS = {
    "keywords": ("clusters", "cluster_id"),
    "ideas": ("clusters", "cluster_id"),
    "writer_tasks": ("ideas", "idea_id"),
    "drafts": ("writer_tasks", "task_id"),
    "image_prompts": ("drafts", "draft_id"),
    "images": ("image_prompts", "prompt_id"),
}


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


class _Checker:
    def __init__(self, conn: AsyncConnection | AsyncSession, run_id: str) -> None:
        self.conn = conn
        self.run_id = run_id
        self.found: list[Violation] = []

    def fail(self, invariant: str, detail: str) -> None:
        self.found.append(Violation(invariant, detail))

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        return list((await self.conn.execute(text(sql), params)).all())

    async def value(self, sql: str, **params: Any) -> Any:
        return (await self.conn.execute(text(sql), params)).scalar()


async def check_run(
    conn: AsyncConnection | AsyncSession,
    run_id: str,
    *,
    media_root: Path | None = None,
    outbox_grace: float = 30.0,
) -> list[Violation]:
    """Every invariant of the module doc for `run_id`; `media_root` also checks the image files on disk."""
    c = _Checker(conn, run_id)
    run = (await c.rows("SELECT * FROM runs WHERE id = :run", run=run_id) or [None])[0]
    if run is None:
        return [Violation("run exists", f"no run {run_id}")]
    batches = await c.rows(
        "SELECT id, stage, seq, status, item_ids, result FROM stage_batches WHERE run_id = :run ORDER BY stage, seq",
        run=run_id,
    )
    stage_results = {r.stage: r for r in await c.rows("SELECT * FROM stage_results WHERE run_id = :run", run=run_id)}
    await _terminal(c, run, batches, stage_results)
    await _items(c, run, batches, stage_results)
    await _orphans_and_duplicates(c, run.site_id, media_root)
    await _money(c, run, batches, stage_results)
    await _messages(c, outbox_grace)
    return c.found


async def _terminal(c: _Checker, run: Any, batches: list[Any], stage_results: dict[int, Any]) -> None:
    if run.status not in TERMINAL:
        c.fail("run terminal", f"run {run.id} is {run.status} at stage {run.current_stage}")
        return
    if run.status == "failed" and not (run.error_message or "").strip():
        c.fail("failed with a reason", f"run {run.id} failed without an error_message")
    if run.status in ("completed", "failed") and run.completed_at is None:
        c.fail("run terminal", f"run {run.id} is {run.status} without completed_at")
    # A cancelled run's released batches may still be answered (late results are recorded), nothing else may wait.
    waiting = ("pending",) if run.status == "cancelled" else ("pending", "released")
    for b in batches:
        if b.status in waiting:
            c.fail("no batch left", f"stage {b.stage} batch {b.seq} ({b.id}) is {b.status} in a {run.status} run")
    for stage, sr in sorted(stage_results.items()):
        if sr.status == "running":
            c.fail("no stage left running", f"stage {stage} result is still running in a {run.status} run")
    active = await c.rows(
        "SELECT id, status, reserved_credits - total_credits_used AS held FROM runs"
        " WHERE site_id = :site AND status IN ('running', 'paused')",
        site=run.site_id,
    )
    for other in active:
        c.fail("no reservation left", f"site still has {other.status} run {other.id} holding {other.held} credits")


def _failed_items(sr: Any, batches: list[Any]) -> tuple[set[int], bool]:
    """Items recorded failed at this stage (worker failures, expired batches) and whether the list was cut."""
    failed = {int(f["item_id"]) for f in (sr.failures or []) if f.get("item_id") is not None}
    failed |= {int(i) for b in batches if b.status == "failed" for i in b.item_ids}
    return failed, len(sr.failures or []) >= MAX_RECORDED_FAILURES


async def _items(c: _Checker, run: Any, batches: list[Any], stage_results: dict[int, Any]) -> None:
    by_stage: dict[int, list[Any]] = defaultdict(list)
    for b in batches:
        by_stage[b.stage].append(b)
    for stage, stage_batches in sorted(by_stage.items()):
        if stage not in OUTPUTS:
            continue
        carried = Counter(int(i) for b in stage_batches if b.status != "cancelled" for i in b.item_ids)
        twice = sorted(i for i, n in carried.items() if n > 1)
        if twice:
            c.fail("no duplicate work", f"stage {stage}: items {twice[:10]} are in more than one batch")
        sr = stage_results.get(stage)
        if sr is None:
            c.fail("stage recorded", f"stage {stage} has batches but no stage result")
            continue
        outputs = await c.rows(OUTPUTS[stage], site=run.site_id)
        has_output = {int(r.item) for r in outputs}
        failed, cut = _failed_items(sr, stage_batches)
        settled = {int(i) for b in stage_batches if b.status in ("done", "failed") for i in b.item_ids}
        lost = sorted(i for i in settled if i not in has_output and i not in failed)
        if lost and not (cut and len(lost) <= sr.items_failed - len(sr.failures or [])):
            c.fail("every item has its output or a failure", f"stage {stage}: items {lost[:10]} have neither")
        both = sorted(failed & has_output)
        if both:
            c.fail("one truth per item", f"stage {stage}: items {both[:10]} are recorded failed and have output")
    await _ideas_per_cluster(c, run.site_id)
    await _prompts_per_draft(c, run.site_id)


async def _ideas_per_cluster(c: _Checker, site: str) -> None:
    rows = await c.rows(
        "SELECT i.cluster_id, count(*) AS n, count(DISTINCT i.run_id) AS runs,"
        " max((r.options -> 'options' ->> 'ideas_per_cluster')::int) AS want"
        " FROM ideas i LEFT JOIN runs r ON r.id = i.run_id WHERE i.site_id = :site GROUP BY i.cluster_id",
        site=site,
    )
    for r in rows:
        want = r.want or 1  # StageOptions.ideas_per_cluster's default when the run did not set it
        if r.n != want or r.runs > 1:
            c.fail("ideas per cluster", f"cluster {r.cluster_id} has {r.n} ideas from {r.runs} runs (want {want})")


async def _prompts_per_draft(c: _Checker, site: str) -> None:
    rows = await c.rows(
        "SELECT d.id, d.body_markdown, array_agg(p.position ORDER BY p.position) AS positions,"
        " count(DISTINCT p.run_id) AS runs, max((r.options -> 'options' ->> 'sections_per_image')::int) AS every"
        " FROM drafts d JOIN image_prompts p ON p.draft_id = d.id LEFT JOIN runs r ON r.id = p.run_id"
        " WHERE d.site_id = :site GROUP BY d.id",
        site=site,
    )
    for r in rows:
        h2 = len(re.findall(r"^##\s", r.body_markdown, flags=re.M))
        every = r.every or 3  # StageOptions.sections_per_image's default
        want = list(range(1 + h2 // every))  # the featured image, then one after every `every` sections
        if list(r.positions) != want or r.runs > 1:
            c.fail("one set of image prompts per draft", f"draft {r.id}: positions {list(r.positions)}, want {want}")


async def _orphans_and_duplicates(c: _Checker, site: str, media_root: Path | None) -> None:
    for r in await c.rows(
        "SELECT c.id, c.size, count(k.id) AS members FROM clusters c LEFT JOIN keywords k ON k.cluster_id = c.id"
        " WHERE c.site_id = :site GROUP BY c.id HAVING count(k.id) = 0 OR count(k.id) <> c.size",
        site=site,
    ):
        what = "has no keywords" if r.members == 0 else f"says size {r.size} but has {r.members} keywords"
        c.fail("no orphan cluster", f"cluster {r.id} {what}")
    for child, (parent, column) in PARENTS.items():
        n = await c.value(  # table and column names come from PARENTS, never from input
            f"SELECT count(*) FROM {child} x JOIN {parent} p ON p.id = x.{column}"
            " WHERE (x.site_id = :site OR p.site_id = :site) AND x.site_id <> p.site_id",
            site=site,
        )
        if n:
            c.fail("no cross-site rows", f"{n} {child} rows point at {parent} of another site")
    n = await c.value(
        "SELECT count(*) FROM images i JOIN image_prompts p ON p.id = i.prompt_id"
        " WHERE i.site_id = :site AND i.draft_id <> p.draft_id",
        site=site,
    )
    if n:
        c.fail("no orphan image", f"{n} images name another draft than their prompt's")
    for stage, sql in OUTPUTS.items():
        done = await c.rows(
            "SELECT DISTINCT x.item::bigint AS item FROM stage_batches b JOIN runs r ON r.id = b.run_id"
            " CROSS JOIN LATERAL jsonb_array_elements_text(b.item_ids) AS x(item)"
            " WHERE r.site_id = :site AND b.stage = :stage AND b.status = 'done'",
            site=site,
            stage=stage,
        )
        recorded = {int(r.item) for r in done}
        unrecorded = sorted({int(r.item) for r in await c.rows(sql, site=site)} - recorded)
        if unrecorded:
            c.fail(
                "no unrecorded work",
                f"stage {stage}: output exists for items {unrecorded[:10]} that no settled batch of the site carried"
                " (work the orchestrator never recorded or charged)",
            )
    dupes = await c.value(
        "SELECT count(*) FROM (SELECT 1 FROM keywords WHERE site_id = :site"
        " GROUP BY keyword_norm HAVING count(*) > 1) d",
        site=site,
    )
    if dupes:
        c.fail("no duplicate keywords", f"{dupes} normalised keywords are stored more than once")
    if media_root is not None:
        await _media(c, site, media_root)


async def _media(c: _Checker, site: str, media_root: Path) -> None:
    known: set[Path] = set()
    for img in await c.rows(
        "SELECT id, path, size_bytes, checksum_sha256 FROM images WHERE site_id = :site", site=site
    ):
        path = Path(img.path)
        known.add(path.resolve())
        try:
            data = path.read_bytes()
        except OSError as exc:
            c.fail("image files intact", f"image {img.id}: {exc}")
            continue
        if len(data) != img.size_bytes or hashlib.sha256(data).hexdigest() != img.checksum_sha256:
            c.fail("image files intact", f"image {img.id}: {path} does not match its size/checksum")
    folder = media_root / site
    # `.tmp` files are writes cut short by a kill before their rename: never referenced, harmless.
    stray = sorted(
        str(p)
        for p in (folder.rglob("*") if folder.is_dir() else [])
        if p.is_file() and p.suffix != ".tmp" and p.resolve() not in known
    )
    if stray:
        c.fail("no orphan files", f"{len(stray)} files without an image row, e.g. {stray[:3]}")


async def _money(c: _Checker, run: Any, batches: list[Any], stage_results: dict[int, Any]) -> None:
    account = (await c.rows("SELECT id, credit_balance FROM accounts WHERE id = :a", a=run.account_id))[0]
    total, last = (
        await c.rows(
            "SELECT coalesce(sum(amount), 0) AS total,"
            " (SELECT balance_after FROM credit_ledger WHERE account_id = :a ORDER BY id DESC LIMIT 1) AS last"
            " FROM credit_ledger WHERE account_id = :a",
            a=account.id,
        )
    )[0]
    if Decimal(total) != account.credit_balance:
        c.fail("ledger sum = balance", f"account {account.id}: ledger {total}, balance {account.credit_balance}")
    if last is not None and Decimal(last) != account.credit_balance:
        c.fail("ledger sum = balance", f"account {account.id}: last balance_after {last} ≠ {account.credit_balance}")
    debits = await c.rows(
        "SELECT idempotency_key AS key, -amount AS amount FROM credit_ledger WHERE run_id = :run AND kind = 'debit'",
        run=run.id,
    )
    by_batch = {b.id: b for b in batches}
    charged: dict[str, Decimal] = {}
    for d in debits:
        command = d.key.removeprefix("debit:")
        if not d.key.startswith("debit:") or command not in by_batch:
            c.fail("no orphan debit", f"ledger debit {d.key} of run {run.id} names no batch of the run")
        else:
            charged[command] = Decimal(d.amount)
    ledger_total = sum((Decimal(d.amount) for d in debits), Decimal(0))
    stages_total = sum((Decimal(sr.credits) for sr in stage_results.values()), Decimal(0))
    if not ledger_total == stages_total == run.total_credits_used:
        c.fail(
            "run debits = stage credits = total",
            f"ledger debits {ledger_total}, per-stage credits {stages_total}, run total {run.total_credits_used}",
        )
    for stage, sr in sorted(stage_results.items()):
        mine = [b for b in batches if b.stage == stage]
        if not mine:
            continue
        done = [b for b in mine if b.status == "done"]
        expired = [b for b in mine if b.status == "failed"]
        want = {
            "batches_total": len(mine),
            "batches_done": len(done) + len(expired),
            "items_in": sum(len(b.item_ids) for b in mine),
            "items_processed": sum(int((b.result or {}).get("processed", 0)) for b in done),
            "items_failed": sum(int((b.result or {}).get("failed", 0)) for b in done)
            + sum(len(b.item_ids) for b in expired),
            "credits": sum((charged.get(b.id, Decimal(0)) for b in mine), Decimal(0)),
        }
        got = {name: getattr(sr, name) for name in want}
        if got != want:
            diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
            c.fail("stage counters = its batches", f"stage {stage}: recorded vs batches {diff}")


async def _messages(c: _Checker, grace: float) -> None:
    for r in await c.rows(
        "SELECT producer, topic, count(*) AS n, count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked FROM outbox"
        " WHERE payload ->> 'run_id' = :run AND published_at IS NULL"
        " AND created_at < now() - make_interval(secs => :grace) GROUP BY producer, topic",
        run=c.run_id,
        grace=grace,
    ):
        c.fail("every message relayed", f"{r.n} {r.producer} → {r.topic} rows never sent ({r.parked} parked)")
