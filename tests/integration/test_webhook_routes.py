"""The webhooks REST routes against the running stack: create an endpoint, send a test event to a real local
HTTP receiver (its signature verifies with the secret the API returned), read the delivery log; a rule's
`notify` action reaches the receiver as a signed `rule.executed` event, a skipped rule as `rule.skipped`."""

from __future__ import annotations

from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook
from typer.testing import CliRunner

from contentline_cli.app import app
from contentline_cli.session import EXIT_INVALID
from devstack.stack import Stack
from tests.helpers import Tenant, create_site, eventually
from tests.integration.webhook_support import Receiver


def delivered(api: httpx.Client, endpoint_id: str, n: int) -> list[dict[str, Any]] | None:
    page = api.get(f"/webhooks/{endpoint_id}/deliveries", params={"status": "delivered"}).json()
    return list(page["items"]) if page["total"] >= n else None


async def test_endpoint_test_event_and_delivery_log_through_the_api(api: httpx.Client) -> None:
    with Receiver() as receiver:
        created = api.post(
            "/webhooks", json={"url": receiver.url, "event_types": ["run.completed"], "description": "ops"}
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_") and endpoint["is_active"] is True
        try:
            assert endpoint["id"] in {e["id"] for e in api.get("/webhooks").json()}
            assert "secret" not in api.get(f"/webhooks/{endpoint['id']}").json()

            sent = api.post(f"/webhooks/{endpoint['id']}/test")
            assert sent.status_code == 202, sent.text
            assert sent.json()["event_type"] == "webhook.test"
            [logged] = await eventually(lambda: delivered(api, endpoint["id"], 1), timeout=60)
            assert logged["attempts"] == 1 and logged["last_status_code"] == 200
            [request] = receiver.successes()
            body = Webhook(endpoint["secret"]).verify(request.body, request.headers)
            assert body["type"] == "webhook.test" and request.event_id == logged["event_id"]
            detail = api.get(f"/webhooks/{endpoint['id']}/deliveries/{logged['id']}").json()
            assert detail["payload"]["id"] == logged["event_id"]

            # A delivered delivery cannot be retried; a disabled endpoint takes no test event.
            assert api.post(f"/webhooks/{endpoint['id']}/deliveries/{logged['id']}/retry").status_code == 409
            assert api.patch(f"/webhooks/{endpoint['id']}", json={"is_active": False}).json()["is_active"] is False
            assert api.post(f"/webhooks/{endpoint['id']}/test").status_code == 409
            bad = api.post("/webhooks", json={"url": "ftp://x", "event_types": ["run.exploded"]})
            assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} >= {"body.url"}
        finally:
            assert api.delete(f"/webhooks/{endpoint['id']}").status_code == 204
        assert api.get(f"/webhooks/{endpoint['id']}").status_code == 404


async def test_rule_executions_reach_webhook_receivers(api: httpx.Client) -> None:
    site = create_site(api)
    with Receiver() as receiver:
        endpoint = api.post("/webhooks", json={"url": receiver.url, "event_types": ["rule.executed", "rule.skipped"]})
        assert endpoint.status_code == 201, endpoint.text
        hook = endpoint.json()
        try:
            rule = api.post(
                f"/sites/{site}/rules",
                json={
                    "name": "tell me",
                    "trigger": "schedule",
                    "schedule": {"cron": "0 6 * * *"},
                    "actions": [{"type": "notify", "message": "rule ran"}],
                    "max_executions_per_day": 1,
                },
            ).json()
            assert api.post(f"/rules/{rule['id']}/execute").json()["status"] == "completed"
            assert api.post(f"/rules/{rule['id']}/execute").json()["error_message"] == "Execution limit reached"
            await eventually(lambda: delivered(api, hook["id"], 2), timeout=60)
            bodies = [Webhook(hook["secret"]).verify(r.body, r.headers) for r in receiver.successes()]
            by_type = {b["type"]: b["data"] for b in bodies}
            assert by_type["rule.executed"]["message"] == "rule ran"
            assert by_type["rule.executed"]["rule_id"] == rule["id"]
            assert by_type["rule.skipped"]["reason"] == "Execution limit reached"
        finally:
            api.delete(f"/webhooks/{hook['id']}")


def test_cli_rules_and_webhooks(stack: Stack, tenant: Tenant, api: httpx.Client) -> None:
    """`contentline rules ...` and `contentline webhooks ...` against the running API."""
    site = create_site(api)
    runner = CliRunner()
    env = {"CONTENTLINE_API_URL": stack.api_url, "CONTENTLINE_API_KEY": tenant.key}

    def cli(*args: str) -> str:
        done = runner.invoke(app, list(args), env=env)
        assert done.exit_code == 0, done.output
        return done.output

    made = cli(
        "rules",
        "create",
        site,
        "--name",
        "big clusters",
        "--trigger",
        "cluster_created",
        "--action",
        "generate_ideas",
        "--when",
        "size gte 5",
        "--max-per-day",
        "3",
    )
    assert "big clusters" in made and "0/3 today" in made
    rule_id = api.get(f"/sites/{site}/rules").json()[0]["id"]
    assert "holds" in cli("rules", "test", rule_id, "--sample", '{"size": 7}')
    assert "fails" in cli("rules", "test", rule_id, "--sample", '{"size": 2}')
    assert "inactive" in cli("rules", "disable", rule_id)
    assert "Rule is inactive" in cli("rules", "execute", rule_id)
    assert "Rule is inactive" in cli("rules", "history", site, "--status", "skipped")
    bad = runner.invoke(
        app, ["rules", "create", site, "--name", "x", "--trigger", "cluster_created", "--action", "launch"], env=env
    )
    assert bad.exit_code == EXIT_INVALID and "actions.0" in bad.output  # the API refused the input
    cli("rules", "delete", rule_id)

    created = cli("webhooks", "create", "http://127.0.0.1:9/cli", "-e", "rule.skipped", "-e", "run.failed")
    endpoint_id = api.get("/webhooks").json()[-1]["id"]
    assert "whsec_" in created and endpoint_id in cli("webhooks", "list")
    assert "queued" in cli("webhooks", "test", endpoint_id)
    assert "webhook.test" in cli("webhooks", "deliveries", endpoint_id)
    assert cli("webhooks", "secret", endpoint_id).strip().startswith("whsec_")
    cli("webhooks", "delete", endpoint_id)
