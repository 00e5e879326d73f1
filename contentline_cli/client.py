"""A small typed client for the orchestrator REST API (`/api/v1`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx
from pydantic import BaseModel, ConfigDict, Field

from contentline_cli.config import DEFAULT_API_URL


class _View(BaseModel):
    # Tolerant reader: fields the API adds later must not break the CLI.
    model_config = ConfigDict(extra="ignore")


class Site(_View):
    id: str
    account_id: str
    name: str
    domain: str | None = None


class RejectedRow(_View):
    line: int | None = None
    reason: str = ""


class ColumnUse(_View):
    header: str
    stored_as: str


class ImportResult(_View):
    received: int
    imported: int
    duplicates: int
    rejected: list[RejectedRow] = Field(default_factory=list)
    columns: list[ColumnUse] = Field(default_factory=list)  # CSV uploads: how each column was used


class StageInfo(_View):
    stage: int
    label: str
    status: str
    items_in: int = 0
    items_processed: int = 0
    items_created: int = 0
    items_skipped: int = 0
    items_failed: int = 0
    failures: list[dict[str, Any]] = Field(default_factory=list)
    batches_total: int = 0
    batches_done: int = 0
    credits: Decimal = Decimal(0)
    seconds: float = 0.0
    partial: bool = False
    stopped_reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def items_done(self) -> int:
        return self.items_processed + self.items_failed + self.items_skipped


class RunInfo(_View):
    run_id: str
    site_id: str
    account_id: str = ""
    trigger: str = ""
    status: str
    current_stage: int = 0
    current_stage_label: str | None = None
    progress: dict[str, Any] = Field(default_factory=dict)
    total_credits_used: Decimal = Decimal(0)
    initial_snapshot: dict[str, Any] = Field(default_factory=dict)
    revised_estimate: dict[str, Any] | None = None
    stopped_reason: str | None = None
    error_message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    stages: list[StageInfo] = Field(default_factory=list)

    def stage(self, number: int) -> StageInfo | None:
        return next((s for s in self.stages if s.stage == number), None)

    def estimates(self) -> tuple[Decimal | None, Decimal | None]:
        """(the estimate at the start, the one revised after clustering), each None when absent."""
        totals = (self.initial_snapshot.get("estimate") or {}).get("total"), (self.revised_estimate or {}).get("total")
        start, revised = (Decimal(str(t)) if t is not None else None for t in totals)
        return start, revised


class Me(_View):
    kind: str
    account_id: str | None = None
    key_id: str | None = None


class Account(_View):
    account_id: str
    name: str = ""
    plan: str = ""
    balance: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)
    available: Decimal = Decimal(0)
    monthly_credits: Decimal = Decimal(0)


class ApiKeyInfo(_View):
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class NewApiKey(ApiKeyInfo):
    key: str


class AccountCreated(_View):
    account: Account
    api_key: NewApiKey


class Activity(_View):
    at: datetime
    stage: int | None = None
    level: str
    message: str


class ApiError(Exception):
    """The API answered with an error status, or could not be reached (status 0). `foreign`: something answered
    that is not the contentline API (no problem body, or no JSON where JSON was due)."""

    def __init__(self, status: int, detail: str, extra: Mapping[str, Any] | None = None, foreign: bool = False) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra: dict[str, Any] = dict(extra or {})
        self.foreign = foreign

    @property
    def field_errors(self) -> list[tuple[str, str]]:
        """(field, reason) of a validation problem, the location prefix (body./query./path.) dropped."""
        out = []
        for error in self.extra.get("errors") or []:
            if isinstance(error, Mapping):
                where = str(error.get("field", ""))
                for prefix in ("body.", "query.", "path.", "header."):
                    where = where.removeprefix(prefix)
                out.append((where, str(error.get("reason", ""))))
        return out

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.detail}" if self.status else self.detail


def format_detail(detail: Any) -> str:
    """Turn FastAPI's `detail` (a string, a validation-error list, or a nested dict) into one readable text."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, Mapping):
        inner = detail.get("detail")
        return format_detail(inner) if inner is not None else json.dumps(detail, default=str)
    if isinstance(detail, Sequence):
        parts = []
        for item in detail:
            if isinstance(item, Mapping) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(format_detail(item))
        return "; ".join(parts)
    return str(detail)


def _not_ours(response: httpx.Response) -> ApiError:
    return ApiError(
        response.status_code,
        f"{response.request.url.scheme}://{response.request.url.netloc.decode()} answered HTTP "
        f"{response.status_code} {response.reason_phrase}, but not as the contentline API (no problem body)",
        foreign=True,
    )


def _error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        return _not_ours(response)
    if not isinstance(body, Mapping) or not {"detail", "status"} <= set(body):
        return _not_ours(response)  # every contentline error is an RFC 9457 problem body
    detail = body.get("detail", body)
    # RFC 9457 problem members are the envelope; what remains are the problem's own numbers and fields.
    extra = {k: v for k, v in body.items() if k not in {"detail", "type", "title", "status"}}
    if isinstance(detail, Mapping):  # e.g. {"detail": {"detail": "...", "rejected": [...]}}
        extra |= {k: v for k, v in detail.items() if k != "detail"}
    if not extra.get("errors"):
        extra.pop("errors", None)
    return ApiError(response.status_code, format_detail(detail), extra)


def keywords_from_json(data: Any) -> list[dict[str, Any]]:
    """Accept `{"keywords": [...]}` or a bare list; items are objects (`keyword`, `volume`, ...) or strings."""
    items = data.get("keywords") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise ValueError('expected {"keywords": [...]} or a JSON list of keywords')
    out: list[dict[str, Any]] = []
    for n, item in enumerate(items, start=1):
        if isinstance(item, str):
            out.append({"keyword": item})
        elif isinstance(item, Mapping):
            out.append(dict(item))
        else:
            raise ValueError(f"item {n} is neither a string nor an object: {item!r}")
    return out


class ContentlineClient:
    """Synchronous client; every call raises `ApiError` on a non-2xx answer or when the API is unreachable."""

    def __init__(self, base_url: str = DEFAULT_API_URL, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=f"{self.base_url}/api/v1", timeout=timeout, transport=transport,
                                  headers=headers)

    def __enter__(self) -> ContentlineClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiError(0, f"the API at {self.base_url} did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the API at {self.base_url}: {exc or type(exc).__name__}") from exc
        if response.is_error:
            raise _error_from(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(0, f"{self.base_url} answered {path} without JSON: not the contentline API?",
                           foreign=True) from None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any API operation: the decoded JSON answer (ApiError on an error status or no answer)."""
        return self._request(method, path, **kwargs)

    def download(self, path: str, target: BinaryIO, params: Mapping[str, Any] | None = None) -> tuple[int, str]:
        """Stream a binary answer (an export) into `target`: (bytes written, the file name the API suggests)."""
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.is_error:
                    response.read()
                    raise _error_from(response)
                written = 0
                for chunk in response.iter_bytes():
                    target.write(chunk)
                    written += len(chunk)
                disposition = response.headers.get("content-disposition", "")
        except httpx.TimeoutException as exc:
            raise ApiError(0, f"the API at {self.base_url} did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the API at {self.base_url}: {exc or type(exc).__name__}") from exc
        name = disposition.split("filename=", 1)[1].strip('"; ') if "filename=" in disposition else ""
        return written, name

    # ------------------------------------------------------------------ accounts and keys
    def me(self) -> Me:
        return Me.model_validate(self._request("GET", "/me"))

    def account(self, account_id: str) -> Account:
        return Account.model_validate(self._request("GET", f"/accounts/{account_id}"))

    def create_account(self, name: str, credits: Decimal = Decimal(0), monthly: Decimal = Decimal(0),
                       account_id: str | None = None) -> AccountCreated:
        body: dict[str, Any] = {"name": name, "initial_credits": str(credits), "monthly_credits": str(monthly)}
        if account_id:
            body["id"] = account_id
        return AccountCreated.model_validate(self._request("POST", "/accounts", json=body))

    def adjust_credits(self, account_id: str, amount: Decimal, reason: str, idempotency_key: str) -> dict[str, Any]:
        return dict(self._request("POST", f"/accounts/{account_id}/credits",
                                  json={"amount": str(amount), "reason": reason},
                                  headers={"Idempotency-Key": idempotency_key}))

    def keys(self, account_id: str) -> list[ApiKeyInfo]:
        return [ApiKeyInfo.model_validate(k) for k in self._request("GET", f"/accounts/{account_id}/keys")]

    def create_key(self, account_id: str, name: str) -> NewApiKey:
        return NewApiKey.model_validate(self._request("POST", f"/accounts/{account_id}/keys", json={"name": name}))

    def revoke_key(self, account_id: str, key_id: str) -> ApiKeyInfo:
        return ApiKeyInfo.model_validate(self._request("DELETE", f"/accounts/{account_id}/keys/{key_id}"))

    # ------------------------------------------------------------------ sites and keywords
    def create_site(self, name: str, domain: str | None = None) -> Site:
        return Site.model_validate(self._request("POST", "/sites", json={"name": name, "domain": domain}))

    def get_site(self, site_id: str) -> Site:
        return Site.model_validate(self._request("GET", f"/sites/{site_id}"))

    def import_keywords(self, site_id: str, keywords: list[dict[str, Any]], source: str = "cli") -> ImportResult:
        body = {"keywords": keywords, "source": source}
        return ImportResult.model_validate(self._request("POST", f"/sites/{site_id}/keywords", json=body))

    def import_keywords_csv(self, site_id: str, filename: str, data: bytes) -> ImportResult:
        files = {"file": (filename, data, "text/csv")}
        return ImportResult.model_validate(self._request("POST", f"/sites/{site_id}/keywords/csv", files=files))

    def import_keywords_file(self, site_id: str, path: Path) -> ImportResult:
        """`.json` files go to the JSON endpoint, everything else (CSV/TSV exports) to the CSV upload."""
        data = path.read_bytes()
        if path.suffix.lower() == ".json":
            keywords = keywords_from_json(json.loads(data))
            return self.import_keywords(site_id, keywords, source=f"json:{path.name}")
        return self.import_keywords_csv(site_id, path.name, data)

    # ------------------------------------------------------------------ runs
    def start_run(self, site_id: str) -> RunInfo:
        return RunInfo.model_validate(self._request("POST", f"/sites/{site_id}/runs"))

    def get_run(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(self._request("GET", f"/runs/{run_id}"))

    def current_run(self, site_id: str) -> RunInfo | None:
        data = self._request("GET", f"/sites/{site_id}/runs/current")
        return RunInfo.model_validate(data) if data else None

    def pause_run(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(self._request("POST", f"/runs/{run_id}/pause"))

    def resume_run(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(self._request("POST", f"/runs/{run_id}/resume"))

    def cancel_run(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(self._request("POST", f"/runs/{run_id}/cancel"))

    def activity(self, run_id: str, limit: int = 100) -> list[Activity]:
        data = self._request("GET", f"/runs/{run_id}/activity", params={"limit": limit})
        return [Activity.model_validate(a) for a in data]

    # ------------------------------------------------------------------ publishing (issue 14)
    def _request_empty(self, method: str, path: str, **kwargs: Any) -> None:
        """Like `_request` for answers without a body (204)."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach the API at {self.base_url}: {exc or type(exc).__name__}") from exc
        if response.is_error:
            raise _error_from(response)

    def publishing_settings(self, site_id: str) -> PublishingSettingsInfo:
        return PublishingSettingsInfo.model_validate(self._request("GET", f"/sites/{site_id}/publishing/settings"))

    def update_publishing_settings(self, site_id: str, patch: Mapping[str, Any]) -> PublishingSettingsInfo:
        data = self._request("PATCH", f"/sites/{site_id}/publishing/settings", json=dict(patch))
        return PublishingSettingsInfo.model_validate(data)

    def publishing_queue(self, site_id: str, states: Sequence[str] = (), limit: int = 100) -> list[QueueEntryInfo]:
        params: dict[str, Any] = {"limit": limit, "state": list(states)}
        return [QueueEntryInfo.model_validate(e)
                for e in self._request("GET", f"/sites/{site_id}/publishing/queue", params=params)]

    def draft_publishing(self, draft_id: int) -> PublishingInfo | None:
        data = self._request("GET", f"/drafts/{draft_id}")
        return PublishingInfo.model_validate(data["publishing"]) if data.get("publishing") else None

    def schedule_draft(self, draft_id: int, at: datetime | None = None) -> DraftPublishingInfo:
        body = {"at": at.isoformat()} if at is not None else {}
        return DraftPublishingInfo.model_validate(self._request("PUT", f"/drafts/{draft_id}/schedule", json=body))

    def unschedule_draft(self, draft_id: int) -> DraftPublishingInfo:
        return DraftPublishingInfo.model_validate(self._request("DELETE", f"/drafts/{draft_id}/schedule"))

    def publish_now(self, draft_id: int) -> DraftPublishingInfo:
        return DraftPublishingInfo.model_validate(self._request("POST", f"/drafts/{draft_id}/publish-now"))

    def wordpress_connection(self, site_id: str) -> WordPressConnectionInfo | None:
        data = self._request("GET", f"/sites/{site_id}/wordpress")
        return WordPressConnectionInfo.model_validate(data) if data else None

    def connect_wordpress(self, site_id: str, connection: Mapping[str, Any]) -> WordPressConnectionInfo:
        data = self._request("PUT", f"/sites/{site_id}/wordpress", json=dict(connection))
        return WordPressConnectionInfo.model_validate(data)

    def disconnect_wordpress(self, site_id: str) -> None:
        self._request_empty("DELETE", f"/sites/{site_id}/wordpress")

    def test_wordpress(self, site_id: str) -> ConnectionTestInfo:
        return ConnectionTestInfo.model_validate(self._request("POST", f"/sites/{site_id}/wordpress/test"))

    def patch_site_config(self, site_id: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH /sites/{id}/config (e.g. `{"limits": {"max_approvals_per_run": 10}}`); the config as stored."""
        return dict(self._request("PATCH", f"/sites/{site_id}/config", json=dict(patch)))


    # ------------------------------------------------------------------ content (issue 16; contentline_cli/content.py)
    def content_page(self, site_id: str, kind: str, **params: Any) -> dict[str, Any]:
        """One page of a site's keywords, clusters, ideas, tasks, drafts or images: {total, page, size, items}."""
        query = {k: v for k, v in params.items() if v is not None}
        return dict(self._request("GET", f"/sites/{site_id}/{kind}", params=query))

    def set_keywords_enabled(self, site_id: str, keyword_ids: list[int], enabled: bool) -> dict[str, Any]:
        body = {"keyword_ids": keyword_ids, "enabled": enabled}
        return dict(self._request("PATCH", f"/sites/{site_id}/keywords", json=body))

    def rename_cluster(self, site_id: str, cluster_id: int, name: str) -> dict[str, Any]:
        return dict(self._request("PATCH", f"/sites/{site_id}/clusters/{cluster_id}", json={"name": name}))

    def move_keywords(self, site_id: str, cluster_id: int, keyword_ids: list[int]) -> dict[str, Any]:
        path = f"/sites/{site_id}/clusters/{cluster_id}/keywords"
        return dict(self._request("POST", path, json={"keyword_ids": keyword_ids}))

    def merge_clusters(self, site_id: str, into_id: int, from_id: int) -> dict[str, Any]:
        path = f"/sites/{site_id}/clusters/{into_id}/merge"
        return dict(self._request("POST", path, json={"from_cluster_id": from_id}))

    def split_cluster(self, site_id: str, cluster_id: int, keyword_ids: list[int], name: str) -> dict[str, Any]:
        path = f"/sites/{site_id}/clusters/{cluster_id}/split"
        return dict(self._request("POST", path, json={"keyword_ids": keyword_ids, "name": name}))

    def edit_draft(self, draft_id: int, changes: dict[str, str]) -> dict[str, Any]:
        return dict(self._request("PATCH", f"/drafts/{draft_id}", json=changes))

    def draft_versions(self, draft_id: int) -> list[dict[str, Any]]:
        return list(self._request("GET", f"/drafts/{draft_id}/versions"))

    def restore_draft(self, draft_id: int, version: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/drafts/{draft_id}/restore", json={"version": version}))

    def regenerate_draft(self, draft_id: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/drafts/{draft_id}/regenerate"))

    # ------------------------------------------------------------------ automation rules (issue 15)
    def rules(self, site_id: str) -> list[dict[str, Any]]:
        return list(self._request("GET", f"/sites/{site_id}/rules"))

    def create_rule(self, site_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", f"/sites/{site_id}/rules", json=spec))

    def rule(self, rule_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/rules/{rule_id}"))

    def update_rule(self, rule_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("PATCH", f"/rules/{rule_id}", json=patch))

    def delete_rule(self, rule_id: str) -> None:
        self._request_empty("DELETE", f"/rules/{rule_id}")

    def execute_rule(self, rule_id: str) -> dict[str, Any]:
        return dict(self._request("POST", f"/rules/{rule_id}/execute"))

    def test_rule(self, rule_id: str, sample: dict[str, Any] | None) -> dict[str, Any]:
        return dict(self._request("POST", f"/rules/{rule_id}/test", json={"sample": sample}))

    def scheduled_tasks(self, site_id: str, **params: Any) -> dict[str, Any]:
        query = {k: v for k, v in params.items() if v is not None}
        return dict(self._request("GET", f"/sites/{site_id}/scheduled-tasks", params=query))

    # ------------------------------------------------------------------ webhooks (issue 15)
    def webhooks(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/webhooks"))

    def create_webhook(self, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", "/webhooks", json=spec))

    def update_webhook(self, endpoint_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("PATCH", f"/webhooks/{endpoint_id}", json=patch))

    def delete_webhook(self, endpoint_id: str) -> None:
        self._request_empty("DELETE", f"/webhooks/{endpoint_id}")

    def webhook_secret(self, endpoint_id: str, rotate: bool = False) -> dict[str, Any]:
        if rotate:
            return dict(self._request("POST", f"/webhooks/{endpoint_id}/secret/rotate"))
        return dict(self._request("GET", f"/webhooks/{endpoint_id}/secret"))

    def test_webhook(self, endpoint_id: str) -> dict[str, Any]:
        return dict(self._request("POST", f"/webhooks/{endpoint_id}/test"))

    def webhook_deliveries(self, endpoint_id: str, **params: Any) -> dict[str, Any]:
        query = {k: v for k, v in params.items() if v is not None}
        return dict(self._request("GET", f"/webhooks/{endpoint_id}/deliveries", params=query))

    def retry_webhook_delivery(self, endpoint_id: str, delivery_id: int) -> dict[str, Any]:
        return dict(self._request("POST", f"/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry"))


class PublishingSettingsInfo(_View):
    site_id: str
    timezone: str = "UTC"
    settings: dict[str, Any] = Field(default_factory=dict)
    queued: int = 0


class PublishingInfo(_View):
    state: str
    scheduled_publish_at: datetime | None = None
    scheduled_by: str = ""
    reason: str | None = None
    reason_code: str | None = None
    next_try_at: datetime | None = None
    attempts: int = 0
    remote_post_id: int | None = None
    remote_status: str | None = None
    url: str | None = None
    published_at: datetime | None = None


class QueueEntryInfo(PublishingInfo):
    draft_id: int
    run_id: str | None = None
    title: str = ""


class DraftPublishingInfo(_View):
    draft_id: int
    site_id: str
    publishing: PublishingInfo


class WordPressConnectionInfo(_View):
    site_id: str
    base_url: str
    username: str
    password: str = ""
    app_password_ref: str | None = None
    default_post_status: str = "publish"
    category_mapping: dict[str, Any] = Field(default_factory=dict)
    tag_mapping: dict[str, Any] = Field(default_factory=dict)


class ConnectionTestInfo(_View):
    ok: bool
    problem: str = ""
    site_name: str = ""
    user: str = ""
    roles: list[str] = Field(default_factory=list)
    marker_plugin: bool = False
    seo_fields: bool = False
    notes: list[str] = Field(default_factory=list)
