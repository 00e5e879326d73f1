"""Ideator process: `python -m services.ideator`."""

from __future__ import annotations

from faststream import FastStream

from services.ideator.handlers import make_handler
from services.ideator.service import IdeatorService
from shared.runtime import Runtime
from shared.topics import IDEATE_COMMANDS
from shared.worker_app import worker_app


def create_app() -> FastStream:
    rt = Runtime.create("ideator", pre_ping=False)
    return worker_app(rt, IDEATE_COMMANDS, make_handler(rt, IdeatorService(rt.sessions, rt.ai)))
