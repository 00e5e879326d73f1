"""Request body size limit that answers with the same problem body as every other error.

(Starlette's own limit middleware answers 413 in plain text, and replaces any response of a request
whose Content-Length is over the limit; this one answers before reading a byte when the length is
declared, and stops a chunked upload as soon as it passes the limit.)
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.orchestrator.web.problems import problem_response


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body larger than {self.max_bytes} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await problem_response(413, detail)(scope, receive, send)
            return
        total = 0

        async def limited() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:  # raised inside the route: the app's handler shapes the answer
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, limited, send)
