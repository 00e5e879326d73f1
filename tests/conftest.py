"""One fixture decides where Kafka and PostgreSQL come from (see devstack.stack): env vars pointing at
running servers → testcontainers when a Docker engine answers → the project's own local launchers.
It never skips: a server that cannot be started fails the session with the reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from devstack.stack import Stack
from tests.helpers import Tenant, create_tenant

ROOT = Path(__file__).resolve().parents[1]
# One operator key per test session, given to the orchestrator through its environment.
OPERATOR_KEY = f"clop_{secrets.token_urlsafe(32)}"
PLENTY = "10000000"


@pytest.fixture(scope="session")
def stack_options() -> dict[str, Any]:
    """More `Stack(...)` arguments (and `extra_env` entries) for a test tier: tests/chaos overrides it."""
    return {}


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, stack_options: dict[str, Any]) -> Iterator[Stack]:
    # One directory per session: two test runs on one machine never share (or wipe) each other's servers.
    state = ROOT / ".stack" / f"test-{os.getpid()}"
    shutil.rmtree(state, ignore_errors=True)
    options = dict(stack_options)
    st = Stack(
        state_dir=state,
        # Short deadlines so a test can watch the ticker work; stage deadline stays generous.
        extra_env={
            "CONTENTLINE_TICK_SECONDS": "0.5",
            "CONTENTLINE_OUTBOX_POLL_SECONDS": "0.5",
            "CONTENTLINE_RUN_LOG_DIR": str(state / "run-logs"),
            "CONTENTLINE_OPERATOR_KEY": OPERATOR_KEY,
            **options.pop("extra_env", {}),
        },
        **options,
    )
    try:
        st.start_all()
        yield st
    finally:
        st.stop()
        failed = request.session.testsfailed
        if failed:  # what the services said is the first thing to read when a stack test fails
            for log in sorted((state / "logs").glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-25:]
                print(f"\n----- last lines of {log.name} -----\n" + "\n".join(tail))
    if not failed and not os.environ.get("CONTENTLINE_KEEP_TEST_STATE"):
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def operator(stack: Stack) -> Iterator[httpx.Client]:
    """A client with the operator key: accounts, credits, global shares, /ops."""
    headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=60, headers=headers) as client:
        yield client


@pytest.fixture(scope="session")
def new_tenant(stack: Stack, operator: httpx.Client) -> Iterator[Callable[..., Tenant]]:
    """A factory: `new_tenant(credits="1000", monthly="0")` → a fresh account with a client holding its key."""
    made: list[Tenant] = []

    def make(credits: str = PLENTY, monthly: str = "0") -> Tenant:
        tenant = create_tenant(operator, stack.api_url, credits, monthly)
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        tenant.client.close()


@pytest.fixture(scope="session")
def tenant(new_tenant: Callable[..., Tenant]) -> Tenant:
    """The account behind `api` (its id and key, e.g. for ingest messages that name the account)."""
    return new_tenant()


@pytest.fixture(scope="session")
def api(tenant: Tenant) -> httpx.Client:
    """An authenticated client of a fresh tenant account with plenty of credits (shared by the session)."""
    return tenant.client


@pytest.fixture(scope="session")
def other_tenant(new_tenant: Callable[..., Tenant]) -> httpx.Client:
    """A second tenant: whatever it asks of `api`'s resources must be 'not found'."""
    return new_tenant().client


@pytest.fixture(scope="session")
def fake(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{stack.fake_url}/_fake", timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
async def engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(stack.database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def db(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
