import uvicorn

from services.orchestrator.app import create_app
from shared.settings import get_settings

settings = get_settings()
# the event loop of every service (shared/event_loop.py)
uvicorn.run(create_app(), host=settings.api_host, port=settings.api_port, log_level="warning", loop=settings.event_loop)
