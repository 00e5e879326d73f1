"""The stack that starts is the stack that answers: each start of a service gets a token of its own, which the
orchestrator's /health echoes and every service writes to its ready file; `up` and the fixture accept nothing
else, so a port taken by another process between the free-port check and the bind fails the start."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from devstack.stack import SERVICES, WORKERS, Stack
from tests.unit.test_devstack_readiness import serve_health


def test_every_service_proved_it_is_this_starts_process(stack: Stack) -> None:
    assert set(stack.tokens) >= set(SERVICES) and len(set(stack.tokens.values())) == len(stack.tokens)
    health = httpx.get(f"{stack.api_url}/health").json()
    assert health == {"status": "ok", "instance": stack.tokens["orchestrator"]}
    for name in WORKERS:
        assert stack.ready_path(name).read_text() == stack.tokens[name], name
        assert stack.procs[name].poll() is None, name


def test_an_api_port_held_by_another_process_fails_the_start(stack: Stack, tmp_path: Path) -> None:
    imposter = serve_health(None)  # answers 200 to /health, like the orchestrator without a token would
    second = Stack(state_dir=tmp_path, api_port=imposter.server_port, fake_port=stack.fake_port)
    second.kafka_bootstrap, second.database_url, second.infra_source = (
        stack.kafka_bootstrap, stack.database_url, stack.infra_source)  # fmt: skip
    (second.state_dir / "logs").mkdir(parents=True)
    try:
        with pytest.raises(RuntimeError) as caught:
            second.start_service("orchestrator")
    finally:
        second.stop()
        imposter.shutdown()
    message = str(caught.value)
    assert "exited with" in message and "answered by another process" in message, message
    assert "address already in use" in message.lower(), message
