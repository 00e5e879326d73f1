"""The CLI's pure helpers and its client's error handling (no server: httpx.MockTransport)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from contentline_cli.client import ApiError, ContentlineClient, RunInfo, StageInfo, format_detail, keywords_from_json
from contentline_cli.config import Connection
from contentline_cli.follow import exit_code_for, headline_counts, stage_seconds
from contentline_cli.session import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_PAYMENT,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    error_lines,
    exit_code,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stage(n: int, created: int = 0, processed: int = 0, **kw: Any) -> dict[str, Any]:
    return {
        "stage": n,
        "label": f"s{n}",
        "status": "completed",
        "items_in": processed,
        "items_processed": processed,
        "items_created": created,
        "credits": "1.5",
        "started_at": T0.isoformat(),
        **kw,
    }


def test_headline_counts_come_from_created_and_review_processed() -> None:
    run = RunInfo.model_validate(
        {
            "run_id": "r",
            "site_id": "s",
            "status": "completed",
            "stages": [
                stage(1, 50, 300),
                stage(2, 50, 50),
                stage(3, 48, 50),
                stage(4, 47, 48),
                stage(5, 94, 47),
                stage(6, 90, 94),
                stage(7, 0, 47),
            ],
        }
    )
    assert headline_counts(run) == {
        "clusters": 50,
        "ideas": 50,
        "tasks": 48,
        "drafts": 47,
        "image prompts": 94,
        "images": 90,
        "ready for review": 47,
    }


def test_headline_counts_of_a_run_that_stopped_early_are_zero_for_later_stages() -> None:
    run = RunInfo.model_validate({"run_id": "r", "site_id": "s", "status": "cancelled", "stages": [stage(1, 7, 20)]})
    counts = headline_counts(run)
    assert counts["clusters"] == 7
    assert counts["ideas"] == counts["ready for review"] == 0


@pytest.mark.parametrize(("status", "code"), [("completed", 0), ("failed", 1), ("cancelled", 1), ("paused", 9)])
def test_exit_codes(status: str, code: int) -> None:
    assert exit_code_for(status) == code


def test_a_run_that_completed_with_no_output_exits_11() -> None:
    assert exit_code_for("completed", "no_output") == 11
    assert exit_code_for("completed", "budget") == 0


def test_stage_seconds_running_finished_and_cancelled_without_seconds() -> None:
    running = StageInfo.model_validate(stage(1, status="running", seconds=0))
    assert stage_seconds(running, now=T0 + timedelta(seconds=12)) == 12
    done = StageInfo.model_validate(stage(1, seconds=3.5, finished_at=(T0 + timedelta(seconds=4)).isoformat()))
    assert stage_seconds(done) == 3.5
    stopped = StageInfo.model_validate(
        stage(1, status="stopped", seconds=0, finished_at=(T0 + timedelta(seconds=7)).isoformat())
    )
    assert stage_seconds(stopped) == 7


def test_format_detail_variants() -> None:
    assert format_detail("site 'x' does not exist") == "site 'x' does not exist"
    validation = [{"loc": ["body", "keywords", 3, "keyword"], "msg": "String should have at least 1 character"}]
    assert format_detail(validation) == "keywords.3.keyword: String should have at least 1 character"
    assert format_detail({"detail": "no importable keyword rows", "rejected": []}) == "no importable keyword rows"


def test_keywords_from_json_accepts_wrapped_lists_and_strings() -> None:
    assert keywords_from_json({"keywords": [{"keyword": "a", "volume": 3}, "b"]}) == [
        {"keyword": "a", "volume": 3},
        {"keyword": "b"},
    ]
    assert keywords_from_json(["x"]) == [{"keyword": "x"}]
    with pytest.raises(ValueError, match="expected"):
        keywords_from_json({"rows": []})
    with pytest.raises(ValueError, match="item 2"):
        keywords_from_json([{"keyword": "a"}, 5])


def _client(handler: Any) -> ContentlineClient:
    return ContentlineClient("http://api.test", transport=httpx.MockTransport(handler))


def problem(status: int, detail: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "urn:x", "title": "t", "status": status, "detail": detail, "errors": [], **extra}


def test_api_errors_carry_status_detail_and_extras() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/keywords/csv"):
            body = problem(422, {"detail": "no importable keyword rows", "rejected": [{"line": 2, "reason": "empty"}]})
            return httpx.Response(422, json=body)
        return httpx.Response(409, json=problem(409, "site 's' already has an active run r1", active_run_id="r1"))

    with _client(handler) as client:
        with pytest.raises(ApiError) as conflict:
            client.start_run("s")
        assert conflict.value.status == 409
        assert conflict.value.extra == {"active_run_id": "r1"}
        with pytest.raises(ApiError) as rejected:
            client.import_keywords_csv("s", "k.csv", b"Keyword\n\n")
        assert str(rejected.value) == "HTTP 422: no importable keyword rows"
        assert rejected.value.extra["rejected"] == [{"line": 2, "reason": "empty"}]


def test_unreachable_api_is_an_api_error_with_status_zero() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with _client(handler) as client, pytest.raises(ApiError) as exc:
        client.get_run("r")
    assert exc.value.status == 0
    assert "cannot reach the API at http://api.test" in str(exc.value)


def test_import_file_routes_csv_and_json(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers["content-type"].split(";")[0]))
        if request.url.path.endswith("/keywords"):
            assert json.loads(request.content)["keywords"] == [{"keyword": "a"}]
        return httpx.Response(201, json={"received": 1, "imported": 1, "duplicates": 0, "rejected": []})

    (tmp_path / "k.json").write_text('["a"]')
    (tmp_path / "k.csv").write_text("Keyword\na\n")
    with _client(handler) as client:
        assert client.import_keywords_file("s", tmp_path / "k.json").imported == 1
        assert client.import_keywords_file("s", tmp_path / "k.csv").received == 1
    assert seen == [
        ("/api/v1/sites/s/keywords", "application/json"),
        ("/api/v1/sites/s/keywords/csv", "multipart/form-data"),
    ]


def test_credits_parse_as_decimal() -> None:
    assert StageInfo.model_validate(stage(1)).credits == Decimal("1.5")


def test_a_server_that_is_not_contentline_is_named_as_such() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/me"):
            return httpx.Response(200, text="<html>hello</html>")
        return httpx.Response(404, text="<html>Not Found</html>")

    with _client(handler) as client:
        with pytest.raises(ApiError) as html_404:
            client.get_run("r")
        assert html_404.value.foreign and "not as the contentline API" in html_404.value.detail
        assert exit_code(html_404.value) == EXIT_UNREACHABLE
        with pytest.raises(ApiError) as not_json:
            client.me()
        assert not_json.value.foreign and exit_code(not_json.value) == EXIT_UNREACHABLE


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, EXIT_NOT_FOUND), (409, EXIT_CONFLICT), (402, EXIT_PAYMENT), (422, EXIT_INVALID), (401, EXIT_AUTH),
     (403, EXIT_AUTH), (503, EXIT_UNREACHABLE), (0, EXIT_UNREACHABLE), (500, EXIT_FAILED)],
)  # fmt: skip
def test_exit_code_tells_the_kind_of_error(status: int, code: int) -> None:
    assert exit_code(ApiError(status, "x")) == code
    assert len({EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_PAYMENT, EXIT_INVALID,
                EXIT_AUTH, EXIT_UNREACHABLE, EXIT_PAUSED, EXIT_TIMEOUT}) == 11 and EXIT_USAGE == 2  # fmt: skip


def test_validation_problems_read_one_line_per_field() -> None:
    one = ApiError(422, "body.limits.max_keywords_per_run: too big", {"errors": [
        {"field": "body.limits.max_keywords_per_run", "reason": "Input should be less than or equal to 1000000"}]})
    assert error_lines(one) == ["limits.max_keywords_per_run: Input should be less than or equal to 1000000 (HTTP 422)"]
    two = ApiError(422, "x", {"errors": [{"field": "query.limit", "reason": "too big"},
                                         {"field": "body.name", "reason": "missing"}]})  # fmt: skip
    assert error_lines(two) == ["2 fields are not valid (HTTP 422):", "  limit: too big", "  name: missing"]
    plain = ApiError(409, "nothing to do: no keyword awaits clustering")
    assert error_lines(plain) == ["nothing to do: no keyword awaits clustering (HTTP 409)"]


def test_unreachable_errors_say_where_the_url_came_from() -> None:
    conn = Connection("http://127.0.0.1:8700", None, "none", "the default URL", note="ignored a stale stack file")
    (line,) = error_lines(ApiError(0, "cannot reach the API at http://127.0.0.1:8700: refused"), conn)
    assert "[URL from the default URL]" in line and "stale stack file" in line
    (line,) = error_lines(ApiError(403, "operator key required"), conn, operator=True)
    assert "no key configured" in line and "operator key" in line
