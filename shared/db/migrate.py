"""Apply Alembic migrations programmatically (`python -m shared.db.migrate`): used by the stack and tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[2]


def upgrade(database_url: str, revision: str = "head") -> None:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, revision)


if __name__ == "__main__":
    from shared.settings import get_settings

    upgrade(get_settings().database_url)
