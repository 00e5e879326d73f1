"""The WordPress client's error classification (transient vs permanent, WordPress's own words kept) and its
retry behaviour, on canned responses (no site needed for what is pure classification)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from services.publisher.service import PublisherService
from services.publisher.wordpress import (
    RetryPolicy,
    WordPressClient,
    WordPressError,
    classify_response,
    classify_transport,
    parse_retry_after,
)


def wp_error(code: str, message: str, status: int, **data: object) -> bytes:
    return json.dumps({"code": code, "message": message, "data": {"status": status, **data}}).encode()


def test_wrong_application_password_is_permanent_and_keeps_wordpress_words() -> None:
    body = wp_error("incorrect_password", "The provided password is an invalid application password.", 401)
    err = classify_response(401, body)
    assert not err.transient
    assert err.status == 401 and err.code == "incorrect_password"
    assert err.reason == (
        "WordPress refused the credentials (401 incorrect_password): "
        "The provided password is an invalid application password."
    )


def test_forbidden_is_permanent() -> None:
    err = classify_response(403, wp_error("rest_cannot_create", "Sorry, you are not allowed to create posts.", 403))
    assert not err.transient
    assert "not allowed to create posts" in err.reason and err.reason.startswith("WordPress does not allow")


def test_missing_route_says_the_rest_api_is_not_there() -> None:
    err = classify_response(404, wp_error("rest_no_route", "No route was found matching the URL.", 404))
    assert not err.transient
    assert "REST API" in err.reason and "rest_no_route" in err.reason


def test_invalid_data_names_each_refused_field() -> None:
    body = wp_error(
        "rest_invalid_param",
        "Invalid parameter(s): status",
        400,
        params={"status": "status is not one of publish, future, draft."},
    )
    err = classify_response(400, body)
    assert not err.transient
    assert "Invalid parameter(s): status" in err.reason
    assert "[status: status is not one of publish, future, draft.]" in err.reason


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 520])
def test_timeouts_rate_limits_and_server_errors_are_transient(status: int) -> None:
    assert classify_response(status, b"<html><body><h1>Service Unavailable</h1></body></html>").transient


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 501])
def test_client_errors_and_not_implemented_are_permanent(status: int) -> None:
    assert not classify_response(status, b"").transient


def test_html_error_pages_are_reduced_to_their_text() -> None:
    page = b"<html><head><title>502</title></head><body><h1>Bad&nbsp;Gateway</h1>\n<p>nginx</p></body></html>"
    err = classify_response(502, page)
    assert err.reason == "WordPress failed (502): 502 Bad Gateway nginx"


def test_wordpress_markup_in_messages_is_stripped() -> None:
    err = classify_response(401, wp_error("invalid_username", "<strong>Error:</strong> Unknown username.", 401))
    assert err.reason.endswith("(401 invalid_username): Error: Unknown username.")


def test_empty_error_body_falls_back_to_the_status_phrase() -> None:
    assert classify_response(503, b"").reason == "WordPress failed (503): Service Unavailable"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert classify_response(429, b"", {"retry-after": "7"}).retry_after == 7.0
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_transport_failures() -> None:
    request = httpx.Request("GET", "http://example.invalid/wp-json/")
    assert classify_transport(httpx.ReadTimeout("timed out", request=request)).transient
    assert classify_transport(httpx.ConnectError("Connection refused", request=request)).transient
    assert not classify_transport(httpx.UnsupportedProtocol("ftp", request=request)).transient
    assert not classify_transport(httpx.TooManyRedirects("loop", request=request)).transient


# ---------------------------------------------------------------------- retry behaviour of the client
def client(handler: Callable[[httpx.Request], httpx.Response], attempts: int = 3) -> WordPressClient:
    policy = RetryPolicy(max_attempts=attempts, budget_seconds=10, max_wait_seconds=0.05)
    return WordPressClient("http://wp.test", "u", "p", policy=policy, transport=httpx.MockTransport(handler))


async def test_transient_answers_are_retried_until_one_succeeds() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(503, headers={"retry-after": "0"})
        return httpx.Response(200, json={"id": 1, "roles": ["administrator"]})

    async with client(handler) as wp:
        assert (await wp.me())["id"] == 1
    assert calls == ["/wp-json/wp/v2/users/me"] * 3


async def test_permanent_answers_are_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401, content=wp_error("incorrect_password", "Bad password.", 401))

    async with client(handler) as wp:
        with pytest.raises(WordPressError) as caught:
            await wp.me()
    assert calls == 1 and caught.value.code == "incorrect_password"


async def test_a_create_is_never_retried_blindly() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadTimeout("the post may well have been created", request=request)

    async with client(handler) as wp:
        with pytest.raises(WordPressError) as caught:
            await wp.create_post({"title": "x"})
    assert calls == 1 and caught.value.transient


async def test_give_up_after_the_attempts_with_the_last_reason() -> None:
    async with client(lambda request: httpx.Response(429, headers={"retry-after": "0"}), attempts=2) as wp:
        with pytest.raises(WordPressError) as caught:
            await wp.me()
    assert caught.value.transient and caught.value.status == 429


async def test_a_timed_out_create_that_happened_is_found_not_repeated() -> None:
    """find-or-create: after a create that timed out, the object is looked up before any second create."""
    created: list[dict[str, object]] = []

    async def find() -> dict[str, object] | None:
        return created[0] if created else None

    async def create() -> dict[str, object]:
        created.append({"id": 7})  # WordPress made it...
        if len(created) == 1:
            raise WordPressError("WordPress did not answer in time", transient=True)  # ...but we never heard
        return created[-1]

    service = PublisherService.__new__(PublisherService)
    service._policy = RetryPolicy(max_attempts=3, budget_seconds=10, max_wait_seconds=0.01)
    found, was_created = await service._find_or_create(find, create)
    assert found == {"id": 7} and not was_created and len(created) == 1


async def test_plain_permalink_sites_are_reached_through_rest_route() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.startswith("/wp-json"):
            return httpx.Response(404, text="<html>Not Found</html>")
        if request.url.params.get("rest_route") == "/":
            return httpx.Response(200, json={"name": "Blog", "namespaces": ["wp/v2"]})
        return httpx.Response(200, json={"id": 3})

    async with client(handler) as wp:
        assert (await wp.discover())["name"] == "Blog"
        assert (await wp.me())["id"] == 3
    assert seen[-1] == "http://wp.test/?rest_route=%2Fwp%2Fv2%2Fusers%2Fme&context=edit"
