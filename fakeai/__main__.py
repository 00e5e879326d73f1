"""``python -m fakeai --host 127.0.0.1 --port 18080``; knobs come from ``FAKEAI_*`` env vars."""

from __future__ import annotations

import argparse

import uvicorn

from fakeai.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fakeai", description="Fake OpenAI-compatible API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
