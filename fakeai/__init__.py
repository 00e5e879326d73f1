"""Fake OpenAI-compatible server for tests and the offline demo (deterministic, fault-injecting)."""

from fakeai.app import create_app
from fakeai.settings import FakeSettings

__all__ = ["FakeSettings", "create_app"]
