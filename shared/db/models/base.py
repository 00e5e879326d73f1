"""The declarative base: one metadata with a naming convention, JSONB for dict/list columns, money as Numeric."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    DateTime,
    MetaData,
    Numeric,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Credits = Numeric(18, 4)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, list[Any]: JSONB}


def now_column() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
