"""shared/kafka_fetch.py leans on aiokafka's internals: if they change, the fetches go out as aiokafka built them
(the behaviour itself is pinned against the real broker in tests/integration/test_kafka_fetch_wait.py)."""

from __future__ import annotations

import logging

import pytest
from aiokafka.consumer.fetcher import Fetcher

from shared import kafka_fetch


def test_an_unexpected_shape_from_aiokafka_is_passed_on_unchanged_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    unexpected = object()  # not the 5-tuple 0.14 returns
    monkeypatch.setattr(Fetcher, "_get_actions_per_node", lambda self, assignment: unexpected)
    kafka_fetch._warn_once.cache_clear()
    fetcher = object.__new__(kafka_fetch.IdleAwareFetcher)  # no client needed for this method
    with caplog.at_level(logging.WARNING, logger="shared.kafka_fetch"):
        assert fetcher._get_actions_per_node(object()) is unexpected
        assert fetcher._get_actions_per_node(object()) is unexpected
    assert [r.message for r in caplog.records].count(
        "aiokafka's fetcher is not what shared/kafka_fetch.py was written for: consumers keep their own wait"
    ) == 1


def test_every_consumer_of_the_process_gets_the_fetcher() -> None:
    import aiokafka.consumer.consumer as consumer_module

    import shared.kafka  # noqa: F401  # installs it

    assert consumer_module.Fetcher is kafka_fetch.IdleAwareFetcher
