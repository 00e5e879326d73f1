"""Writer process: `python -m services.writer`."""

from __future__ import annotations

from faststream import FastStream

from services.writer.handlers import make_handler
from services.writer.service import WriterService
from shared.runtime import Runtime
from shared.topics import WRITE_COMMANDS
from shared.worker_app import worker_app


def create_app() -> FastStream:
    rt = Runtime.create("writer", pre_ping=False)
    return worker_app(rt, WRITE_COMMANDS, make_handler(rt, WriterService(rt.sessions, rt.ai)))
