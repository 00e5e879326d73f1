"""`contentline account ...`, `credits ...`, `keys ...` and `whoami`: accounts, credits (balance, ledger,
grants), API keys. Creating accounts and moving credits needs the operator key; an account key manages its
own keys and reads its own balance and ledger."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Annotated

import typer

from contentline_cli.client import ContentlineClient
from contentline_cli.session import JsonOption, client_for, console, err_console, fields, print_json, table

account_app = typer.Typer(no_args_is_help=True, help="Accounts (create, list and grant need the operator key).")
credits_app = typer.Typer(no_args_is_help=True, help="Credits: balance, ledger, grants (grant: operator key).")
keys_app = typer.Typer(no_args_is_help=True, help="API keys of an account: list, create (shown once), revoke.")


def _account_id(client: ContentlineClient, account: str | None) -> str:
    """The account a command is about: the given one (the operator may name any), else the key's own."""
    if account:
        return account
    me = client.me()
    if me.account_id is None:
        raise ValueError("the operator key belongs to no account: name one with --account")
    return me.account_id


AccountOption = Annotated[str | None, typer.Option("--account", help="Account id (default: the key's own).")]
PageOption = Annotated[int, typer.Option(min=1, help="Page number (1-based).")]
SizeOption = Annotated[int, typer.Option(min=1, max=500, help="Rows per page.")]
BALANCE = ["account_id", "name", "plan", "balance", "reserved", "available", "monthly_credits"]


def whoami(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Which account (or the operator) the configured key belongs to."""
    with client_for(ctx) as client:
        me = client.call("GET", "/me")
    if as_json:
        print_json(me)
    else:
        console.print("operator" if me["kind"] == "operator" else f"account {me['account_id']} (key {me['key_id']})")


def _balance(ctx: typer.Context, account: str | None, as_json: bool) -> None:
    with client_for(ctx, operator=account is not None) as client:
        data = client.call("GET", f"/accounts/{_account_id(client, account)}")
    print_json(data) if as_json else fields(data, BALANCE)


def _ledger(ctx: typer.Context, account: str | None, page: int, size: int, as_json: bool) -> None:
    with client_for(ctx, operator=account is not None) as client:
        account_id = _account_id(client, account)
        data = client.call("GET", f"/accounts/{account_id}/ledger", params={"page": page, "size": size})
    if as_json:
        print_json(data)
    else:
        table(data, ["at", "kind", "amount", "balance_after", "run_id", "key"],
              title=f"Ledger of {account_id}, newest first (page {page})", empty="no entries")


def _grant(ctx: typer.Context, account_id: str, amount: Decimal, reason: str, idempotency_key: str | None,
           as_json: bool) -> None:  # fmt: skip
    key = idempotency_key or f"cli-{uuid.uuid4().hex}"
    with client_for(ctx, operator=True) as client:
        answer = client.adjust_credits(account_id, amount, reason, key)
    if as_json:
        print_json(answer)
        return
    entry = answer.get("entry", {})
    console.print(f"{account_id}: {entry.get('amount')} credits, balance now {entry.get('balance_after')} "
                  f"(idempotency key {key}: repeat it to retry safely)")


GrantReason = Annotated[str, typer.Option(help="Why (stored in the ledger).")]
IdempotencyOption = Annotated[str | None, typer.Option(help="Reuse to retry safely (default: new).")]


# ---------------------------------------------------------------------- account
@account_app.command("show")
def account_show(ctx: typer.Context, account: AccountOption = None, as_json: JsonOption = False) -> None:
    """Balance, what active runs hold back, and what is available."""
    _balance(ctx, account, as_json)


@account_app.command("list")
def account_list(ctx: typer.Context, page: PageOption = 1, size: SizeOption = 50, as_json: JsonOption = False) -> None:
    """(operator) Every account with its balance."""
    with client_for(ctx, operator=True) as client:
        data = client.call("GET", "/accounts", params={"page": page, "size": size})
    print_json(data) if as_json else table(data, [*BALANCE, "created_at"], empty="no accounts")


@account_app.command("create")
def account_create(
    ctx: typer.Context, name: str,
    credits: Annotated[Decimal, typer.Option(help="Initial credits.")] = Decimal(0),
    monthly: Annotated[Decimal, typer.Option(help="Credits granted every month.")] = Decimal(0),
    account_id: Annotated[str | None, typer.Option("--id", help="Account id (default: generated).")] = None,
    as_json: JsonOption = False,
) -> None:
    """(operator) Create an account; its first API key is printed once on stdout — store it now."""
    with client_for(ctx, operator=True) as client:
        made = client.create_account(name, credits, monthly, account_id)
    if as_json:
        print_json(made.model_dump(mode="json"))
        return
    err_console.print(f"Created account [cyan]{made.account.account_id}[/] with key {made.api_key.prefix}…; "
                      "the key below is shown this once:")
    print(made.api_key.key)


@account_app.command("grant")
def account_grant(ctx: typer.Context, account_id: str, amount: Decimal, reason: GrantReason = "operator grant",
                  idempotency_key: IdempotencyOption = None, as_json: JsonOption = False) -> None:
    """(operator) Grant credits (a negative amount takes them back); once per idempotency key."""
    _grant(ctx, account_id, amount, reason, idempotency_key, as_json)


@account_app.command("replenish")
def account_replenish(ctx: typer.Context, account_id: str, as_json: JsonOption = False) -> None:
    """(operator) Grant this month's credits now (once per month, like the scheduler)."""
    with client_for(ctx, operator=True) as client:
        data = client.call("POST", f"/accounts/{account_id}/replenish")
    if as_json:
        print_json(data)
    else:
        done = "granted" if data["granted"] else "already granted this month (or no monthly allowance)"
        console.print(f"{account_id}: {done}; balance {data['account']['balance']}")


# ---------------------------------------------------------------------- credits
@credits_app.command("balance")
def credits_balance(ctx: typer.Context, account: AccountOption = None, as_json: JsonOption = False) -> None:
    """Balance, reserved by active runs, available."""
    _balance(ctx, account, as_json)


@credits_app.command("ledger")
def credits_ledger(ctx: typer.Context, account: AccountOption = None, page: PageOption = 1, size: SizeOption = 50,
                   as_json: JsonOption = False) -> None:  # fmt: skip
    """Every balance change (grants, debits per batch, adjustments), newest first."""
    _ledger(ctx, account, page, size, as_json)


@credits_app.command("grant")
def credits_grant(ctx: typer.Context, account_id: str, amount: Decimal, reason: GrantReason = "operator grant",
                  idempotency_key: IdempotencyOption = None, as_json: JsonOption = False) -> None:
    """(operator) Grant credits (negative: take back); once per idempotency key."""
    _grant(ctx, account_id, amount, reason, idempotency_key, as_json)


# ---------------------------------------------------------------------- keys
@keys_app.command("list")
def keys_list(ctx: typer.Context, account: AccountOption = None, as_json: JsonOption = False) -> None:
    """The account's keys (never their secrets)."""
    with client_for(ctx, operator=account is not None) as client:
        data = client.call("GET", f"/accounts/{_account_id(client, account)}/keys")
    if as_json:
        print_json(data)
    else:
        table(data, ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"], empty="no keys")


@keys_app.command("create")
def keys_create(ctx: typer.Context, name: str, account: AccountOption = None, as_json: JsonOption = False) -> None:
    """Create a key; the key is printed once on stdout — store it now."""
    with client_for(ctx, operator=account is not None) as client:
        key = client.create_key(_account_id(client, account), name)
    if as_json:
        print_json(key.model_dump(mode="json"))
        return
    err_console.print(f"Created key {key.id} ({key.prefix}…); shown this once:")
    print(key.key)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str, account: AccountOption = None, as_json: JsonOption = False) -> None:
    """Revoke a key at once."""
    with client_for(ctx, operator=account is not None) as client:
        key = client.revoke_key(_account_id(client, account), key_id)
    if as_json:
        print_json(key.model_dump(mode="json"))
    else:
        console.print(f"key {key.id} ({key.name}) revoked at {key.revoked_at}")
