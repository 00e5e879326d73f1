"""Count what a transaction did only once it committed: a rolled-back debit is retried, and counting it at
the call would count it twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

_KEY = "contentline.metrics.after_commit"


def after_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run `action` (a metric update) when the session's transaction commits; drop it on rollback."""
    session.info.setdefault(_KEY, []).append(action)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for action in session.info.pop(_KEY, []):
        action()


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session, *_: Any) -> None:
    session.info.pop(_KEY, None)
