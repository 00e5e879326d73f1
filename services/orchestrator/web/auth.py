"""Who is calling: an account (by one of its API keys) or the operator (one key from the environment).

Security schemes are declared in the OpenAPI document (`AccountKey`, `OperatorKey`, both HTTP bearer):
    no or unknown key           → 401 with WWW-Authenticate
    account key, operator route → 403
    operator key, tenant route  → 403 (the operator acts on accounts, not inside them)
    another account's resource  → 404 (decided by the scoped queries, never here)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from services.orchestrator.errors import NotFoundError

log = logging.getLogger(__name__)
MAX_TOKEN_LENGTH = 256


@dataclass(frozen=True)
class Caller:
    account_id: str | None  # None: the operator
    key_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.account_id is None

    @property
    def tenant(self) -> str:
        """The caller's account id; only on routes whose guard admits account keys alone."""
        if self.account_id is None:
            raise RuntimeError("an operator caller reached a tenant-only code path")
        return self.account_id

    def require_owner(self, account_id: str) -> None:
        """Operator: any account; an account: only itself (another one is 'not found', never 'forbidden')."""
        if not self.is_operator and self.account_id != account_id:
            raise NotFoundError(f"account {account_id!r} does not exist")


OPERATOR = Caller(account_id=None)
# token → (account id, key id) of a live account key, or None
KeyLookup = Callable[[str], Awaitable[tuple[str, str] | None]]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    """Turns a bearer token into a Caller. The operator key is compared in constant time and never logged."""

    def __init__(self, operator_key: SecretStr | None, lookup: KeyLookup) -> None:
        self._operator = _digest(operator_key.get_secret_value()) if operator_key else None
        self._lookup = lookup

    async def identify(self, token: str) -> Caller | None:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        if self._operator is not None and hmac.compare_digest(_digest(token), self._operator):
            return OPERATOR
        found = await self._lookup(token)
        return Caller(account_id=found[0], key_id=found[1]) if found else None


account_bearer = HTTPBearer(
    scheme_name="AccountKey",
    description="An account API key, `Authorization: Bearer cl_<id>_<secret>`; sees only its own account.",
    auto_error=False,
)
operator_bearer = HTTPBearer(
    scheme_name="OperatorKey",
    description="The operator key (CONTENTLINE_OPERATOR_KEY or _FILE): accounts, credits, global shares, /ops.",
    auto_error=False,
)
Credentials = HTTPAuthorizationCredentials | None


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="contentline"' + (f', error="{error}"' if error else "")
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


async def _identify(request: Request, credentials: Credentials) -> Caller:
    if credentials is None:
        raise _unauthorized("this route needs an API key: send `Authorization: Bearer <key>`")
    authenticator: Authenticator = request.app.state.authenticator
    caller = await authenticator.identify(credentials.credentials)
    if caller is None:
        raise _unauthorized("the API key is not valid (unknown, revoked or mistyped)", "invalid_token")
    return caller


async def account_caller(
    request: Request, credentials: Annotated[Credentials, Security(account_bearer)]
) -> Caller:
    caller = await _identify(request, credentials)
    if caller.is_operator:
        raise HTTPException(403, "the operator key does not act inside an account; use that account's API key")
    return caller


async def operator_caller(
    request: Request, credentials: Annotated[Credentials, Security(operator_bearer)]
) -> Caller:
    caller = await _identify(request, credentials)
    if not caller.is_operator:
        raise HTTPException(403, "this route needs the operator key")
    return caller


async def any_caller(
    request: Request,
    account: Annotated[Credentials, Security(account_bearer)],
    operator: Annotated[Credentials, Security(operator_bearer)],
) -> Caller:
    return await _identify(request, account or operator)


TenantCaller = Annotated[Caller, Security(account_caller)]
OperatorCaller = Annotated[Caller, Security(operator_caller)]
AnyCaller = Annotated[Caller, Security(any_caller)]
