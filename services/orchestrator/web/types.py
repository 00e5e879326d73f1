"""Input types every router uses, so no text, id or number can reach the database in a shape that breaks it.

* Text fields reject NUL and the other C0 control characters (`SafeText` keeps tab, LF and CR, `SafeLine`
  keeps none) and lone surrogates (not encodable as UTF-8, so PostgreSQL would refuse them with a 500).
* Path ids are short ASCII tokens; numeric ids and paging numbers stay inside PostgreSQL's BIGINT.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, Field, StringConstraints

from services.orchestrator.safetext import BAD_LINE, describe_bad_char

# The same rule as a JSON Schema pattern for the OpenAPI document (generators and clients can honour it).
TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f]*$"
LINE_PATTERN = r"^[^\u0000-\u001f]*$"

INT64_MAX = 2**63 - 1
ID_PATTERN = r"^[A-Za-z0-9_.-]+$"


def _text(value: str) -> str:
    problem = describe_bad_char(value)
    if problem:
        raise ValueError(problem)
    return value


def _line(value: str) -> str:
    problem = describe_bad_char(value, BAD_LINE)
    if problem:
        raise ValueError(problem)
    return value


SafeText = Annotated[str, AfterValidator(_text), Field(json_schema_extra={"pattern": TEXT_PATTERN})]
SafeLine = Annotated[str, AfterValidator(_line), Field(json_schema_extra={"pattern": LINE_PATTERN})]

# Ids in paths: site, run, account and key ids are all short ASCII tokens.
ResourceId = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=ID_PATTERN)]
SiteId = Annotated[ResourceId, Path(description="A site id of the caller's account")]
RunId = Annotated[ResourceId, Path(description="A run id of the caller's account")]
AccountId = Annotated[ResourceId, Path(description="An account id (an account key sees only its own)")]
KeyId = Annotated[ResourceId, Path(description="An API key id (the public prefix shown in listings)")]
DraftId = Annotated[int, Path(ge=1, le=INT64_MAX, description="A draft id of the caller's account")]
OutboxRowId = Annotated[int, Path(ge=1, le=INT64_MAX, description="An outbox row id")]

Page = Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")]
Limit = Annotated[int, Query(ge=1, le=1000, description="How many entries at most")]
