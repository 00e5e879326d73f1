"""Imager process: `python -m services.imager`."""

from __future__ import annotations

from faststream import FastStream

from services.imager.handlers import make_handler
from services.imager.service import ImagerService
from services.imager.storage import LocalMediaStorage
from shared.runtime import Runtime
from shared.topics import IMAGE_COMMANDS
from shared.worker_app import worker_app


def create_app() -> FastStream:
    rt = Runtime.create("imager", pre_ping=False)
    service = ImagerService(rt.sessions, rt.ai, LocalMediaStorage(rt.settings.media_dir))
    return worker_app(rt, IMAGE_COMMANDS, make_handler(rt, service))
