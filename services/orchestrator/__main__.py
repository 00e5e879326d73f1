import uvicorn

from services.orchestrator.app import create_app
from shared.settings import get_settings

settings = get_settings()
uvicorn.run(create_app(), host=settings.api_host, port=settings.api_port, log_level="warning")
