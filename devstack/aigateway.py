"""`python -m devstack.aigateway`: one OpenAI-compatible base URL whose chat goes to a real local model.

The services take a single OPENAI_BASE_URL for chat, embeddings and images. llama-server has chat only
(its embeddings mode excludes chat, and SmolLM2 is no embedding model) and no images endpoint, so for
`--local-model` this gateway sends `/v1/chat/completions` to llama-server and everything else to the
fake provider. It is a plain pass-through: status codes, headers and bodies as the upstream sent them.

A client that gives up (its timeout) closes its connection; the gateway then closes the upstream one, so
llama-server cancels that generation instead of finishing it for nobody while retries pile up behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

CHAT_PATHS = frozenset({"v1/chat/completions", "chat/completions"})
# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones httpx/uvicorn recompute.
_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
                   "content-length", "proxy-authorization", "proxy-authenticate"})


def create_app(chat_url: str, fallback_url: str) -> FastAPI:
    client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/_gateway/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "chat": chat_url, "fallback": fallback_url}

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def forward(path: str, request: Request) -> Response:
        base = chat_url if path in CHAT_PATHS else fallback_url
        upstream = client.build_request(
            request.method, f"{base}/{path}", params=request.query_params, content=await request.body(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in _DROP},
        )  # fmt: skip
        sending = asyncio.ensure_future(client.send(upstream, stream=True))
        while not sending.done():
            await asyncio.wait({sending}, timeout=0.5)
            if not sending.done() and await request.is_disconnected():
                sending.cancel()  # closes the upstream connection: llama-server stops generating
                with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                    await sending
                return Response(status_code=499)
        try:
            reply = sending.result()
        except httpx.HTTPError as exc:
            return Response(f'{{"error": {{"message": "gateway: {base} unreachable: {type(exc).__name__}"}}}}',
                            status_code=502, media_type="application/json")
        return StreamingResponse(
            reply.aiter_raw(), status_code=reply.status_code, background=BackgroundTask(reply.aclose),
            headers={k: v for k, v in reply.headers.items() if k.lower() not in _DROP | {"date", "server"}},
        )  # fmt: skip

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.aigateway", description=__doc__.split("\n")[0])
    parser.add_argument("--chat-url", required=True, help="base URL for /v1/chat/completions (llama-server)")
    parser.add_argument("--fallback-url", required=True, help="base URL for everything else (the fake provider)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(args.chat_url.rstrip("/"), args.fallback_url.rstrip("/"))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
