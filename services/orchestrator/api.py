"""REST API (FastAPI). Thin: validate, call the service, shape the answer. Problems → 4xx with a reason."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, File, HTTPException, Query, Request, UploadFile, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.orchestrator.config import DEFAULT_SHARES, SiteConfig, SiteConfigPatch
from services.orchestrator.importing import ImportError_, parse_csv
from services.orchestrator.operations import OutboxOperations
from services.orchestrator.review import ReviewService
from services.orchestrator.service import ProblemError, RunQueries, RunService
from services.orchestrator.views import ActivityView, RunView
from shared.contracts import KeywordIn, Stage
from shared.db.models import SiteConfigRow
from shared.settings import get_settings

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=253)
    account_id: str | None = Field(default=None, max_length=64)


class SiteOut(BaseModel):
    id: str
    account_id: str
    name: str
    domain: str | None


class KeywordsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keywords: list[KeywordIn] = Field(min_length=1, max_length=100_000)
    source: str = Field(default="api", max_length=100)


class ImportOut(BaseModel):
    received: int
    imported: int
    duplicates: int
    rejected: list[dict[str, Any]] = Field(default_factory=list)


class ConfigOut(BaseModel):
    site_id: str
    config: SiteConfig
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_schedule_note: str | None


def config_out(site_id: str, config: SiteConfig, row: SiteConfigRow) -> ConfigOut:
    return ConfigOut(
        site_id=site_id,
        config=config,
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        last_schedule_note=row.last_schedule_note,
    )


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    plan: str = Field(default="starter", min_length=1, max_length=40)
    initial_credits: Decimal = Field(default=Decimal(0), ge=0, le=Decimal(100_000_000), decimal_places=4)
    monthly_credits: Decimal = Field(default=Decimal(0), ge=0, le=Decimal(100_000_000), decimal_places=4)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approved", "rejected"]
    note: str = Field(default="", max_length=2000)


class SharesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shares: dict[str, int] | None = Field(description="percent per AI function, summing to 100; null = defaults")


def problem_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return JSONResponse(status_code=exc.status, content={"detail": exc.detail, **exc.extra})


def build_router(runs: RunService, queries: RunQueries, review: ReviewService, ops: OutboxOperations) -> APIRouter:
    api = APIRouter(prefix="/api/v1")

    @api.post("/sites", status_code=status.HTTP_201_CREATED)
    async def create_site(body: SiteIn) -> SiteOut:
        site = await runs.create_site(body.name, body.domain, body.account_id)
        return SiteOut(id=site.id, account_id=site.account_id, name=site.name, domain=site.domain)

    @api.get("/sites/{site_id}")
    async def get_site(site_id: str) -> SiteOut:
        site = await runs.get_site(site_id)
        return SiteOut(id=site.id, account_id=site.account_id, name=site.name, domain=site.domain)

    @api.post("/sites/{site_id}/keywords", status_code=status.HTTP_201_CREATED)
    async def import_keywords(site_id: str, body: KeywordsIn) -> ImportOut:
        summary = await runs.import_keywords(site_id, body.keywords, body.source)
        assert summary is not None
        return ImportOut(**summary.__dict__)

    @api.post("/sites/{site_id}/keywords/csv", status_code=status.HTTP_201_CREATED)
    async def import_keywords_csv(site_id: str, file: Annotated[UploadFile, File()]) -> ImportOut:
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"file larger than {MAX_UPLOAD_BYTES} bytes")
        try:
            parsed = parse_csv(data)
        except ImportError_ as exc:
            raise HTTPException(422, f"cannot import {file.filename or 'file'}: {exc}") from exc
        if not parsed.keywords:
            raise HTTPException(
                422, {"detail": "no importable keyword rows", "rejected": [p.__dict__ for p in parsed.problems[:100]]}
            )
        summary = await runs.import_keywords(site_id, parsed.keywords, f"csv:{file.filename or 'upload'}")
        assert summary is not None
        return ImportOut(
            received=summary.received + parsed.duplicates_in_file + len(parsed.problems),
            imported=summary.imported,
            duplicates=summary.duplicates + parsed.duplicates_in_file,
            rejected=[p.__dict__ for p in parsed.problems[:1000]],
        )

    @api.get("/sites/{site_id}/pipeline")
    async def pipeline_overview(site_id: str) -> dict[str, Any]:
        counts = await runs.pipeline_overview(site_id)
        return {
            "site_id": site_id,
            "pending": [{"stage": s, "label": Stage(s).label, "pending": n} for s, n in sorted(counts.items())],
        }

    @api.post("/sites/{site_id}/runs", status_code=status.HTTP_201_CREATED)
    async def run_now(site_id: str) -> RunView:
        run = await runs.start_run(site_id, "manual")
        return await queries.run(run.id)

    @api.get("/sites/{site_id}/config")
    async def get_config(site_id: str) -> ConfigOut:
        return config_out(site_id, *(await runs.get_config(site_id)))

    @api.patch("/sites/{site_id}/config")
    async def update_config(site_id: str, body: SiteConfigPatch) -> ConfigOut:
        try:
            config, row = await runs.update_config(site_id, body)
        except ValidationError as exc:  # the merged config is checked as a whole (e.g. shares summing to 100)
            raise RequestValidationError(exc.errors(include_url=False)) from exc
        return config_out(site_id, config, row)

    @api.get("/sites/{site_id}/estimate")
    async def estimate(site_id: str) -> dict[str, Any]:
        return await runs.estimate(site_id)

    @api.get("/sites/{site_id}/processing")
    async def current_processing(site_id: str) -> dict[str, Any]:
        return await queries.processing(site_id)

    @api.get("/budget-shares")
    async def default_shares() -> dict[str, int]:
        return dict(DEFAULT_SHARES)

    @api.get("/sites/{site_id}/budget-shares")
    async def site_shares(site_id: str) -> dict[str, Any]:
        config, _ = await runs.get_config(site_id)
        return {"site_id": site_id, "override": config.budget_shares, "effective": config.shares()}

    @api.put("/sites/{site_id}/budget-shares")
    async def set_site_shares(site_id: str, body: SharesIn) -> dict[str, Any]:
        try:
            config, _ = await runs.update_config(site_id, SiteConfigPatch(budget_shares=body.shares))
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from exc
        return {"site_id": site_id, "override": config.budget_shares, "effective": config.shares()}

    @api.post("/accounts", status_code=status.HTTP_201_CREATED)
    async def create_account(body: AccountIn) -> dict[str, Any]:
        account = await runs.create_account(body.id, body.name, body.plan, body.initial_credits, body.monthly_credits)
        return await runs.account_balance(account.id)

    @api.get("/accounts/{account_id}")
    async def balance(account_id: str) -> dict[str, Any]:
        return await runs.account_balance(account_id)

    @api.get("/accounts/{account_id}/ledger")
    async def ledger(
        account_id: str, page: Annotated[int, Query(ge=1)] = 1, size: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> list[dict[str, Any]]:
        return await runs.ledger(account_id, page, size)

    @api.post("/accounts/{account_id}/replenish")
    async def replenish(account_id: str) -> dict[str, Any]:
        granted = await runs.replenish(account_id)
        return {"granted": granted, **(await runs.account_balance(account_id))}

    @api.get("/sites/{site_id}/runs/current")
    async def current_run(site_id: str) -> RunView | None:
        return await queries.current(site_id)

    @api.get("/sites/{site_id}/runs")
    async def run_history(
        site_id: str, page: Annotated[int, Query(ge=1)] = 1, size: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> dict[str, Any]:
        return await queries.history(site_id, page, size)

    @api.get("/runs/{run_id}")
    async def get_run(run_id: str) -> RunView:
        return await queries.run(run_id)

    @api.post("/runs/{run_id}/pause")
    async def pause(run_id: str) -> RunView:
        await runs.pause(run_id)
        return await queries.run(run_id)

    @api.post("/runs/{run_id}/resume")
    async def resume(run_id: str) -> RunView:
        await runs.resume(run_id)
        return await queries.run(run_id)

    @api.post("/runs/{run_id}/cancel")
    async def cancel(run_id: str) -> RunView:
        await runs.cancel(run_id)
        return await queries.run(run_id)

    @api.get("/runs/{run_id}/activity")
    async def activity(
        run_id: str,
        stage: Annotated[int | None, Query(ge=1, le=7)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[ActivityView]:
        return await queries.activity(run_id, stage, limit)

    @api.get("/sites/{site_id}/review-queue")
    async def review_queue(site_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return await runs.review_queue(site_id, limit)

    @api.get("/drafts/{draft_id}")
    async def get_draft(draft_id: int) -> dict[str, Any]:
        return await review.draft(draft_id)

    @api.post("/drafts/{draft_id}/review")
    async def decide(draft_id: int, body: DecisionIn) -> dict[str, Any]:
        return await review.decide(draft_id, body.decision, body.note)

    @api.post("/drafts/{draft_id}/publish")
    async def publish(draft_id: int) -> dict[str, Any]:
        return await review.publish(draft_id)

    @api.get("/ops/outbox/parked")
    async def parked_outbox(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return await ops.parked(limit)

    @api.post("/ops/outbox/{row_id}/retry")
    async def retry_outbox(row_id: int) -> dict[str, Any]:
        return await ops.retry(row_id)

    return api


def install(app: FastAPI, runs: RunService, queries: RunQueries, review: ReviewService, ops: OutboxOperations) -> None:
    app.include_router(build_router(runs, queries, review, ops))
    app.add_exception_handler(ProblemError, problem_handler)

    token = get_settings().instance_token

    @app.get("/health")
    async def health() -> dict[str, str | None]:
        # The per-start token proves to the launcher that it reached this process, not whatever holds the port.
        return {"status": "ok", "instance": token}
