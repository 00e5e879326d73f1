"""Sites API: sites, keyword import (JSON and planner CSV), the keyword export, config, budget shares (the keyword
list is the content router's)."""

from __future__ import annotations

import asyncio
import csv
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from services.orchestrator.config import SiteConfig, SiteConfigPatch
from services.orchestrator.importing import ImportError_, ParsedImport, parse_csv
from services.orchestrator.safetext import describe_bad_char
from services.orchestrator.sites.service import SiteService
from services.orchestrator.web.auth import TenantCaller
from services.orchestrator.web.problems import responses
from services.orchestrator.web.routing import KindRouter, RouteKind
from services.orchestrator.web.types import Page, SafeLine, SiteId
from shared.contracts import KeywordIn, Stage
from shared.db.models import Site, SiteConfigRow

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_REJECTED_SHOWN = 1000


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[SafeLine, Field(min_length=1, max_length=200)]
    domain: Annotated[SafeLine | None, Field(max_length=253)] = None


class SiteOut(BaseModel):
    id: str
    account_id: str
    name: str
    domain: str | None
    created_at: AwareDatetime

    @classmethod
    def of(cls, site: Site) -> SiteOut:
        return cls(id=site.id, account_id=site.account_id, name=site.name, domain=site.domain,
                   created_at=site.created_at)


class KeywordsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keywords: list[KeywordIn] = Field(min_length=1, max_length=100_000)
    source: Annotated[SafeLine, Field(min_length=1, max_length=100)] = "api"


class RejectedRow(BaseModel):
    line: int
    reason: str


class ColumnOut(BaseModel):
    header: str
    stored_as: str = Field(description="a keyword field, extra.<header> (kept as text), or ignored (why)")


class ImportOut(BaseModel):
    received: int
    imported: int
    duplicates: int
    rejected: list[RejectedRow] = Field(default_factory=list)


class CsvImportOut(ImportOut):
    columns: list[ColumnOut] = Field(description="how each column of the file was used")


class PendingStage(BaseModel):
    stage: int
    label: str
    pending: int


class PipelineOut(BaseModel):
    site_id: str
    pending: list[PendingStage]


class ConfigOut(BaseModel):
    site_id: str
    config: SiteConfig
    effective_budget_shares: dict[str, int]
    next_run_at: AwareDatetime | None
    last_run_at: AwareDatetime | None
    last_schedule_note: str | None


class SharesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shares: dict[str, int] | None = Field(
        description="percent per AI function, summing to 100; null = the global shares"
    )


class GlobalSharesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shares: dict[str, int] = Field(description="percent for every AI function, summing to 100")


class SharesOut(BaseModel):
    site_id: str
    override: dict[str, int] | None
    effective: dict[str, int]


def _config_out(site_id: str, config: SiteConfig, row: SiteConfigRow, default_shares: dict[str, int]) -> ConfigOut:
    return ConfigOut(
        site_id=site_id,
        config=config,
        effective_budget_shares=config.shares(default_shares),
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        last_schedule_note=row.last_schedule_note,
    )


def _body_errors(exc: ValidationError) -> RequestValidationError:
    """A model checked inside the handler fails like one FastAPI checked: 422 naming body.<field>."""
    return RequestValidationError(
        [{**e, "loc": ("body", *e["loc"]), "input": None} for e in exc.errors(include_url=False)]
    )


def _upload_name(file: UploadFile) -> str:
    """The file name as far as it is fit to store (it becomes the keywords' `source`)."""
    name = file.filename or "upload"
    if describe_bad_char(name) is not None:
        name = "".join(c for c in name if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF)
    return name[:80] or "upload"


def _parse_upload(data: bytes) -> tuple[ParsedImport, list[dict[str, Any]]]:
    """The parsed file and the keywords in it the database cannot store (run in a worker thread)."""
    parsed = parse_csv(data)
    unstorable = [
        {"type": "csv", "loc": ("file", f"keyword {n + 1}"), "msg": f"{k.keyword[:40]!r} {problem}"}
        for n, k in enumerate(parsed.keywords)
        if (problem := describe_bad_char(k.keyword))
    ]
    return parsed, unstorable


CSV_SCHEMA = {"type": "string"}
KEYWORDS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KeywordsIn"}}},
    }
}


def build(sites: SiteService) -> list[APIRouter]:
    account = KindRouter(RouteKind.ACCOUNT, tags=["sites"])
    anyone = KindRouter(RouteKind.ANY_KEY, tags=["sites"])
    operator = KindRouter(RouteKind.OPERATOR, tags=["budget (operator)"])

    @account.post("/sites", status_code=status.HTTP_201_CREATED)
    async def create_site(body: SiteIn, caller: TenantCaller) -> SiteOut:
        """A site of the caller's account."""
        return SiteOut.of(await sites.create_site(caller.tenant, body.name, body.domain))

    @account.get("/sites")
    async def list_sites(
        caller: TenantCaller, page: Page = 1, size: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> list[SiteOut]:
        return [SiteOut.of(s) for s in await sites.list_sites(caller.tenant, page, size)]

    @account.get("/sites/{site_id}")
    async def get_site(site_id: SiteId, caller: TenantCaller) -> SiteOut:
        return SiteOut.of(await sites.get_site(caller.tenant, site_id))

    @account.post("/sites/{site_id}/keywords", status_code=status.HTTP_201_CREATED, openapi_extra=KEYWORDS_BODY)
    async def import_keywords(site_id: SiteId, caller: TenantCaller, request: Request) -> ImportOut:
        """Import keywords (`KeywordsIn`); duplicates (same normalised text) are counted, not stored twice.

        The body is checked in a worker thread: 100,000 keywords take seconds to validate, and the event
        loop keeps serving other requests meanwhile.
        """
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise RequestValidationError(
                [{"type": "content_type", "loc": ("body",), "msg": "expected a JSON body (application/json)"}]
            )
        raw: Any = await request.json() if await request.body() else None
        try:
            body = await asyncio.to_thread(KeywordsIn.model_validate, raw)
        except ValidationError as exc:
            raise _body_errors(exc) from None
        summary = await sites.import_keywords(caller.tenant, site_id, body.keywords, body.source)
        return ImportOut(received=summary.received, imported=summary.imported, duplicates=summary.duplicates)

    @account.post(
        "/sites/{site_id}/keywords/csv", status_code=status.HTTP_201_CREATED, responses=responses(400)
    )
    async def import_keywords_csv(
        site_id: SiteId, caller: TenantCaller, file: Annotated[UploadFile, File()]
    ) -> CsvImportOut:
        """Upload a keyword tool's export (Semrush, Ahrefs, Keyword Planner, Search Console; CSV/TSV, UTF-8 or
        UTF-16 with or without BOM); rows that cannot be used are listed, and how each column was used."""
        await sites.get_site(caller.tenant, site_id)  # 404 before reading a large file
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"file larger than {MAX_UPLOAD_BYTES} bytes")
        name = _upload_name(file)
        try:
            parsed, unstorable = await asyncio.to_thread(_parse_upload, data)  # CPU work off the event loop
        except (ImportError_, csv.Error, ValueError) as exc:  # the file as a whole: nothing is imported
            raise RequestValidationError(
                [{"type": "csv", "loc": ("file",), "msg": f"cannot import {name}: {str(exc)[:300]}"}]
            ) from None
        if unstorable:  # all or nothing: a file with text the database cannot hold imports no row
            raise RequestValidationError(unstorable[:100])
        rejected = [RejectedRow(line=p.line, reason=p.reason) for p in parsed.problems]
        if not parsed.keywords:
            raise RequestValidationError(
                [{"type": "csv", "loc": ("file",), "msg": f"no importable keyword rows in {name}"}]
                + [{"type": "csv", "loc": (f"file:{r.line}",), "msg": r.reason} for r in rejected[:99]]
            )
        summary = await sites.import_keywords(caller.tenant, site_id, parsed.keywords, f"csv:{name}")
        return CsvImportOut(
            received=summary.received + parsed.duplicates_in_file + len(parsed.problems),
            imported=summary.imported,
            duplicates=summary.duplicates + parsed.duplicates_in_file,
            rejected=rejected[:MAX_REJECTED_SHOWN],
            columns=[ColumnOut(header=c.header, stored_as=c.stored_as) for c in parsed.columns],
        )

    @account.get(
        "/sites/{site_id}/keywords/export.csv",
        response_class=Response,
        responses={200: {"description": "The site's keywords as CSV", "content": {"text/csv": {"schema": CSV_SCHEMA}}}},
    )
    async def export_keywords(site_id: SiteId, caller: TenantCaller) -> Response:
        """The site's keywords as CSV; cells a spreadsheet would run as a formula are neutralised (`'=...`)."""
        body = await sites.export_keywords_csv(caller.tenant, site_id)
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="keywords-{site_id}.csv"'},
        )

    @account.get("/sites/{site_id}/pipeline")
    async def pipeline_overview(site_id: SiteId, caller: TenantCaller) -> PipelineOut:
        """Items pending at each stage."""
        counts = await sites.pipeline_overview(caller.tenant, site_id)
        return PipelineOut(
            site_id=site_id,
            pending=[PendingStage(stage=s, label=Stage(s).label, pending=n) for s, n in sorted(counts.items())],
        )

    @account.get("/sites/{site_id}/config")
    async def get_config(site_id: SiteId, caller: TenantCaller) -> ConfigOut:
        return _config_out(site_id, *(await sites.get_config(caller.tenant, site_id)))

    @account.patch("/sites/{site_id}/config")
    async def update_config(site_id: SiteId, caller: TenantCaller, body: SiteConfigPatch) -> ConfigOut:
        """Change some settings; the merged config is validated as a whole (e.g. shares summing to 100)."""
        try:
            return _config_out(site_id, *(await sites.update_config(caller.tenant, site_id, body)))
        except ValidationError as exc:
            raise _body_errors(exc) from None

    @account.get("/sites/{site_id}/budget-shares")
    async def site_shares(site_id: SiteId, caller: TenantCaller) -> SharesOut:
        config, _, default = await sites.get_config(caller.tenant, site_id)
        return SharesOut(site_id=site_id, override=config.budget_shares, effective=config.shares(default))

    @account.put("/sites/{site_id}/budget-shares")
    async def set_site_shares(site_id: SiteId, caller: TenantCaller, body: SharesIn) -> SharesOut:
        """Override the global shares for this site (null: back to the global ones)."""
        try:
            config, _, default = await sites.update_config(
                caller.tenant, site_id, SiteConfigPatch(budget_shares=body.shares)
            )
        except ValidationError as exc:
            raise _body_errors(exc) from None
        return SharesOut(site_id=site_id, override=config.budget_shares, effective=config.shares(default))

    @anyone.get("/budget-shares")
    async def global_shares() -> dict[str, int]:
        """The global budget shares (percent of a run's credit cap per AI function)."""
        return await sites.global_shares()

    @operator.put("/budget-shares")
    async def set_global_shares(body: GlobalSharesIn) -> dict[str, int]:
        """Change the global shares for every site without its own override, on every replica at once."""
        try:
            return await sites.set_global_shares(body.shares)
        except ValueError as exc:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("body", "shares"), "msg": str(exc)}]
            ) from None

    return [account, anyone, operator]
