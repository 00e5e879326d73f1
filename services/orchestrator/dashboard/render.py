"""Templates (Jinja2 with autoescape on for everything) and the small view helpers they use."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape

from services.orchestrator.dashboard.session import Viewer
from shared.contracts import STAGE_LABELS, Stage

HERE = Path(__file__).parent
STAGES = [(int(s), STAGE_LABELS[s]) for s in Stage]
_H2 = re.compile(r"<h2[\s>]", re.I)


def credits(value: Decimal | int | float | str | None) -> str:
    if value is None:
        return "-"
    return f"{Decimal(str(value)):,.2f}"


def when(value: datetime | None, zone: str = "UTC") -> str:
    if value is None:
        return "-"
    local = value.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def figure(url: str, alt: str, caption: str, width: int | None, height: int | None) -> str:
    size = f' width="{width}" height="{height}"' if width and height else ""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{escape(url)}" alt="{escape(alt)}"{size}>{cap}</figure>'


def place_images(body_html: str, images: list[dict[str, Any]]) -> Markup:
    """The sanitised body with each image where the publisher puts it: `after-section-N` after the N-th H2
    section, anything else last (the featured image is shown above the body by the template)."""
    starts = [m.start() for m in _H2.finditer(body_html)]
    inserts: list[tuple[int, int, str]] = []
    for order, image in enumerate(images):
        if image["placement"] == "featured" or not image.get("url"):
            continue
        match = re.fullmatch(r"after-section-(\d+)", image["placement"])
        section = int(match.group(1)) if match else None
        at = starts[section] if section is not None and section < len(starts) else len(body_html)
        inserts.append(
            (at, order, figure(image["url"], image["alt_text"], image["caption"], image["width"], image["height"]))
        )
    out, last = [], 0
    for at, _, block in sorted(inserts):
        out += [body_html[last:at], block]
        last = at
    out.append(body_html[last:])
    return Markup("".join(out))  # body_html went through sanitise_html; the figures are escaped


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["credits"] = credits
    env.filters["when"] = when
    env.globals["STAGES"] = STAGES
    return env


class Templates:
    def __init__(self) -> None:
        self.env = environment()

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    def page(
        self, request: Request, name: str, viewer: Viewer | None, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        html = self.render(name, request=request, viewer=viewer, **context)
        return HTMLResponse(html, status_code=status_code)

    def fragment(
        self, name: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any
    ) -> HTMLResponse:
        return HTMLResponse(self.render(name, **context), status_code=status_code, headers=headers)
