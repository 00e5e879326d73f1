"""`contentline webhooks ...`: the account's webhook endpoints, their secrets, test events and delivery logs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from contentline_cli.session import client_for, console

webhooks_app = typer.Typer(no_args_is_help=True, help="Webhook endpoints: signed notifications of pipeline events.")

EVENTS = (
    "run.completed, run.failed, run.paused, run.stopped_budget, draft.ready_for_review, draft.published, "
    "draft.publish_failed, rule.executed, rule.skipped"
)


def _line(e: dict[str, Any]) -> str:
    state = "[green]active[/]" if e["is_active"] else f"[yellow]disabled[/] {e.get('disabled_reason') or ''}"
    return f"{e['id']} {e['url']} {state}: {', '.join(e['event_types'])}"


@webhooks_app.command("list")
def list_endpoints(ctx: typer.Context) -> None:
    with client_for(ctx) as client:
        for endpoint in client.webhooks():
            console.print(_line(endpoint))


@webhooks_app.command("create")
def create(
    ctx: typer.Context,
    url: str,
    event: Annotated[list[str], typer.Option("--event", "-e", help=f"An event type ({EVENTS}); repeat.")],
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
) -> None:
    """Add an endpoint; its signing secret is printed once (also: `webhooks secret`)."""
    with client_for(ctx) as client:
        created = client.create_webhook({"url": url, "event_types": event, "description": description})
    console.print(_line(created))
    console.print(f"signing secret: [bold]{created['secret']}[/]")


@webhooks_app.command("enable")
def enable(ctx: typer.Context, endpoint_id: str) -> None:
    with client_for(ctx) as client:
        console.print(_line(client.update_webhook(endpoint_id, {"is_active": True})))


@webhooks_app.command("disable")
def disable(ctx: typer.Context, endpoint_id: str) -> None:
    with client_for(ctx) as client:
        console.print(_line(client.update_webhook(endpoint_id, {"is_active": False})))


@webhooks_app.command("delete")
def delete(ctx: typer.Context, endpoint_id: str) -> None:
    """Delete the endpoint with its delivery log."""
    with client_for(ctx) as client:
        client.delete_webhook(endpoint_id)
    console.print(f"deleted {endpoint_id}")


@webhooks_app.command("secret")
def secret(
    ctx: typer.Context,
    endpoint_id: str,
    rotate: Annotated[bool, typer.Option(help="Make a new one (the old one signs too for a grace period).")] = False,
) -> None:
    with client_for(ctx) as client:
        found = client.webhook_secret(endpoint_id, rotate=rotate)
    console.print(found["secret"])


@webhooks_app.command("test")
def test(ctx: typer.Context, endpoint_id: str) -> None:
    """Send a `webhook.test` event (queued, signed and retried like any other)."""
    with client_for(ctx) as client:
        delivery = client.test_webhook(endpoint_id)
    console.print(f"delivery {delivery['id']} queued (event {delivery['event_id']})")


@webhooks_app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    endpoint_id: str,
    status: Annotated[str | None, typer.Option(help="pending, failed, delivered or dead.")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    size: Annotated[int, typer.Option(min=1, max=200)] = 50,
) -> None:
    """The endpoint's delivery log, newest first."""
    with client_for(ctx) as client:
        found = client.webhook_deliveries(endpoint_id, status=status, page=page, size=size)
    table = Table(box=box.SIMPLE_HEAD, title=f"{found['total']} deliveries (page {found['page']})")
    for column in ("id", "event", "type", "status", "attempts", "last code", "last error", "next attempt"):
        table.add_column(column)
    for d in found["items"]:
        table.add_row(
            str(d["id"]),
            d["event_id"],
            d["event_type"],
            d["status"],
            str(d["attempts"]),
            str(d["last_status_code"] or ""),
            (d["last_error"] or "")[:60],
            (d["next_attempt_at"] or "")[:19],
        )
    console.print(table)


@webhooks_app.command("retry")
def retry(ctx: typer.Context, endpoint_id: str, delivery_id: int) -> None:
    """Send a failed or dead delivery again now."""
    with client_for(ctx) as client:
        delivery = client.retry_webhook_delivery(endpoint_id, delivery_id)
    console.print(f"delivery {delivery['id']} {delivery['status']}")
