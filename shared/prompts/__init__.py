"""Prompt templates: default files next to this module, per-site overrides, and the site's voice.

Every prompt a service sends is a file here, `<name>.txt` (e.g. `ideas.user.txt`). Placeholders use
`string.Template` syntax: `$name` or `${name}` (use `${name}` when letters follow directly), and `$$` for a
literal dollar sign. A site overrides a template through `StageOptions.prompt_templates[name]` (API:
`PATCH /api/v1/sites/{id}/config` with `{"options": {"prompt_templates": {...}}}`); an override must keep the
template's required placeholders (`required_placeholders(name)`, the lines the model and the fake provider
rely on: `Keywords:`, `Target words:`, `Number of items:`, `Outline:`) and may use only the placeholders the
service passes plus the voice placeholders.

Voice placeholders, available in every template: `$language`, `$tone`, `$audience`, `$brand_notes`,
`$banned_words` (comma-separated) and `$voice` (the whole voice block). Every system prompt
(`*.system`) carries the voice block: where its template says `$voice`, else appended at the end, so an
override can move the block but never drop it.

This module imports nothing from `shared.contracts` at run time: `StageOptions` validates overrides with
`check_override` and `shared.contracts` imports this module.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.contracts import StageOptions

SUFFIX = ".txt"
MAX_TEMPLATE_CHARS = 8000
VOICE_PLACEHOLDERS = frozenset({"language", "tone", "audience", "brand_notes", "banned_words", "voice"})

# What an override must keep: the values that carry the task (and the line conventions models parse).
_REQUIRED: dict[str, frozenset[str]] = {
    "cluster_label.user": frozenset({"keywords"}),
    "ideas.user": frozenset({"keywords", "ideas_per_cluster", "target_words"}),
    "draft_frame.user": frozenset({"title", "primary_keyword", "keywords", "target_words", "faq_count"}),
    "draft_section.user": frozenset({"heading", "keywords", "target_words", "outline"}),
    "image_prompts.user": frozenset({"keywords", "image_count", "placements"}),
}


def _discover() -> tuple[str, ...]:
    root = resources.files(__name__)
    return tuple(sorted(p.name.removesuffix(SUFFIX) for p in root.iterdir() if p.is_file() and p.name.endswith(SUFFIX)))


TEMPLATE_NAMES: tuple[str, ...] = _discover()


def is_system(name: str) -> bool:
    return name.endswith(".system")


@cache
def default_text(name: str) -> str:
    """The shipped template (the file without its final newline)."""
    if name not in TEMPLATE_NAMES:
        raise KeyError(f"unknown prompt template {name!r}; known: {', '.join(TEMPLATE_NAMES)}")
    text = resources.files(__name__).joinpath(name + SUFFIX).read_text(encoding="utf-8")
    return text.removesuffix("\n")


def placeholders(text: str) -> set[str]:
    return set(Template(text).get_identifiers())


def required_placeholders(name: str) -> frozenset[str]:
    """Placeholders an override of `name` must keep."""
    if name not in TEMPLATE_NAMES:
        raise KeyError(f"unknown prompt template {name!r}; known: {', '.join(TEMPLATE_NAMES)}")
    return _REQUIRED.get(name, frozenset())


def allowed_placeholders(name: str) -> frozenset[str]:
    """Placeholders a template of `name` may use: the default's and the voice placeholders."""
    return frozenset(placeholders(default_text(name))) | VOICE_PLACEHOLDERS


def check_override(name: str, text: str) -> None:
    """Raise ValueError naming the template and the problem if `text` cannot replace template `name`."""
    if name not in TEMPLATE_NAMES:
        raise ValueError(f"unknown prompt template {name!r}; known: {', '.join(TEMPLATE_NAMES)}")
    if len(text) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"prompt template {name!r} is {len(text)} characters long (at most {MAX_TEMPLATE_CHARS})")
    if not text.strip():
        raise ValueError(f"prompt template {name!r} is empty")
    template = Template(text)
    if not template.is_valid():
        raise ValueError(
            f"prompt template {name!r} has an invalid placeholder: use $name or ${{name}}, and $$ for a dollar sign"
        )
    used = set(template.get_identifiers())
    missing = sorted(required_placeholders(name) - used)
    if missing:
        listed = ", ".join(f"${p}" for p in missing)
        raise ValueError(f"prompt template {name!r} is missing the required placeholder(s) {listed}")
    unknown = sorted(used - allowed_placeholders(name))
    if unknown:
        raise ValueError(
            f"prompt template {name!r} uses unknown placeholder(s) {', '.join(f'${p}' for p in unknown)}; "
            f"allowed: {', '.join(f'${p}' for p in sorted(allowed_placeholders(name)))}"
        )


def _line(value: str) -> str:
    """One line: a site's text never starts a line of its own (no injected `Keywords:` convention)."""
    return " ".join(value.split())


def voice_block(options: StageOptions) -> str:
    lines = [
        "Voice:",
        f"- Write in {_line(options.language)}.",
        f"- Tone: {_line(options.tone)}",
        f"- Audience: {_line(options.audience)}",
    ]
    if options.brand_notes.strip():
        lines.append(f"- Brand notes: {_line(options.brand_notes)}")
    if options.banned_words:
        lines.append(f"- Never use these words: {', '.join(_line(w) for w in options.banned_words)}")
    return "\n".join(lines)


def voice_values(options: StageOptions) -> dict[str, str]:
    return {
        "language": _line(options.language),
        "tone": _line(options.tone),
        "audience": _line(options.audience),
        "brand_notes": _line(options.brand_notes),
        "banned_words": ", ".join(_line(w) for w in options.banned_words),
        "voice": voice_block(options),
    }


def template_text(name: str, options: StageOptions) -> str:
    """The site's override of `name` if it has one, else the default."""
    return options.prompt_templates.get(name) or default_text(name)


def render(name: str, options: StageOptions, **values: str) -> str:
    """Fill template `name` (the site's override or the default) with `values` and the site's voice.

    Raises KeyError if a placeholder the template uses is neither given nor a voice placeholder.
    """
    text = template_text(name, options)
    voice = voice_values(options)
    filled = Template(text).substitute({**voice, **values})
    if is_system(name) and "voice" not in placeholders(text):
        filled = f"{filled.rstrip()}\n\n{voice['voice']}"
    return filled


__all__ = [
    "MAX_TEMPLATE_CHARS",
    "TEMPLATE_NAMES",
    "VOICE_PLACEHOLDERS",
    "check_override",
    "default_text",
    "render",
    "required_placeholders",
    "voice_block",
]
