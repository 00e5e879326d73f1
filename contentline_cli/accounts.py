"""`contentline account ...`, `contentline keys ...` and `contentline whoami`: accounts, credits, API keys.
Creating accounts and granting credits needs the operator key; an account key manages its own keys."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from contentline_cli.client import ContentlineClient
from contentline_cli.session import client_for, console, err_console

account_app = typer.Typer(no_args_is_help=True, help="Accounts and credits (create and grant need the operator key).")
keys_app = typer.Typer(no_args_is_help=True, help="API keys of an account: list, create (shown once), revoke.")


def _credits(value: Decimal) -> str:
    return f"{value:,.2f}"


def _account_id(client: ContentlineClient, account: str | None) -> str:
    """The account a command is about: the given one (the operator may name any), else the key's own."""
    if account:
        return account
    me = client.me()
    if me.account_id is None:
        raise ValueError("the operator key belongs to no account: name one with --account")
    return me.account_id


AccountOption = Annotated[str | None, typer.Option("--account", help="Account id (default: the key's own).")]


def whoami(ctx: typer.Context) -> None:
    """Which account (or the operator) the configured key belongs to."""
    with client_for(ctx) as client:
        me = client.me()
    console.print("operator" if me.kind == "operator" else f"account [cyan]{me.account_id}[/] (key {me.key_id})")


@account_app.command("show")
def account_show(ctx: typer.Context, account: AccountOption = None) -> None:
    """Balance, what active runs hold back, and what is available."""
    with client_for(ctx) as client:
        info = client.account(_account_id(client, account))
    console.print(f"[bold]{info.name}[/] ({info.account_id}, plan {info.plan}): balance {_credits(info.balance)}, "
                  f"reserved {_credits(info.reserved)}, available {_credits(info.available)}")


@account_app.command("create")
def account_create(
    ctx: typer.Context, name: str,
    credits: Annotated[Decimal, typer.Option(help="Initial credits.")] = Decimal(0),
    monthly: Annotated[Decimal, typer.Option(help="Credits granted every month.")] = Decimal(0),
    account_id: Annotated[str | None, typer.Option("--id", help="Account id (default: generated).")] = None,
) -> None:
    """(operator) Create an account; its first API key is printed once on stdout — store it now."""
    with client_for(ctx) as client:
        made = client.create_account(name, credits, monthly, account_id)
    err_console.print(f"Created account [cyan]{made.account.account_id}[/] with key {made.api_key.prefix}…; "
                      "the key below is shown this once:")
    print(made.api_key.key)


@account_app.command("grant")
def account_grant(
    ctx: typer.Context, account_id: str, amount: Decimal,
    reason: Annotated[str, typer.Option(help="Why (stored in the ledger).")] = "operator grant",
    idempotency_key: Annotated[str | None, typer.Option(help="Reuse to retry safely (default: new).")] = None,
) -> None:
    """(operator) Grant credits (a negative amount takes them back); once per idempotency key."""
    key = idempotency_key or f"cli-{uuid.uuid4().hex}"
    with client_for(ctx) as client:
        answer = client.adjust_credits(account_id, amount, reason, key)
    entry = answer.get("entry", {})
    console.print(f"{account_id}: {entry.get('amount')} credits, balance now {entry.get('balance_after')} "
                  f"(idempotency key {key})")


@keys_app.command("list")
def keys_list(ctx: typer.Context, account: AccountOption = None) -> None:
    """The account's keys (never their secrets)."""
    with client_for(ctx) as client:
        keys = client.keys(_account_id(client, account))
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("id", "name", "prefix", "created", "last used", "revoked"):
        table.add_column(column)
    for k in keys:
        table.add_row(k.id, k.name, k.prefix, f"{k.created_at:%Y-%m-%d %H:%M}",
                      f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
                      f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "")
    console.print(table)


@keys_app.command("create")
def keys_create(ctx: typer.Context, name: str, account: AccountOption = None) -> None:
    """Create a key; the key is printed once on stdout — store it now."""
    with client_for(ctx) as client:
        key = client.create_key(_account_id(client, account), name)
    err_console.print(f"Created key {key.id} ({key.prefix}…); shown this once:")
    print(key.key)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str, account: AccountOption = None) -> None:
    """Revoke a key at once."""
    with client_for(ctx) as client:
        key = client.revoke_key(_account_id(client, account), key_id)
    console.print(f"key {key.id} ({key.name}) revoked at {key.revoked_at}")


