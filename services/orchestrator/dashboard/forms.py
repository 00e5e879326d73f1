"""The configure dialog: every field of a site's config as a form field, and the form back into a config
patch whose validation messages land beside the fields they are about."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from services.orchestrator.config import DEFAULT_SHARES, STAGES, Limits, SiteConfig, SiteConfigPatch
from shared.contracts import STAGE_LABELS, Stage, StageOptions

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass
class Field_:
    name: str  # the form field, also the error key: "limits.max_keywords_per_run", "batch_sizes.1"
    label: str
    kind: str  # number | text | checkbox | select | time | textarea
    value: Any
    choices: list[tuple[str, str]] = field(default_factory=list)
    step: str = "1"
    hint: str = ""

    @property
    def id(self) -> str:
        return "cfg-" + self.name.replace(".", "-").replace("_", "-")


@dataclass
class Section:
    title: str
    fields: list[Field_]


def _limit_label(name: str) -> str:
    return name.removeprefix("max_").replace("_per_run", " per run").replace("_", " ")


def sections(config: SiteConfig) -> list[Section]:
    opts = config.options
    shares = config.budget_shares or {}
    return [
        Section(
            "Schedule",
            [
                Field_("is_enabled", "Run on a schedule", "checkbox", config.is_enabled),
                Field_(
                    "frequency",
                    "Frequency",
                    "select",
                    config.frequency,
                    [("daily", "daily"), ("weekly", "weekly"), ("monthly", "monthly")],
                ),
                Field_("scheduled_time", "Time of day", "time", config.scheduled_time.strftime("%H:%M")),
                Field_("timezone", "Time zone (IANA name)", "text", config.timezone, hint="e.g. Europe/Berlin"),
                Field_(
                    "weekly_day",
                    "Day of the week (weekly)",
                    "select",
                    str(config.weekly_day),
                    [(str(i), d) for i, d in enumerate(WEEKDAYS)],
                ),
                Field_("monthly_day", "Day of the month (monthly; 31 = last day)", "number", config.monthly_day),
            ],
        ),
        Section(
            "Stages",
            [
                *(
                    Field_(
                        f"stage_enabled.{s}",
                        f"Run stage {s} ({STAGE_LABELS[Stage(s)]})",
                        "checkbox",
                        config.stage_enabled[s],
                    )
                    for s in STAGES
                ),
                *(
                    Field_(f"batch_sizes.{s}", f"Batch size, stage {s}", "number", config.batch_sizes[s])
                    for s in STAGES
                ),
                Field_(
                    "delay_between_batches_seconds",
                    "Delay between batches (seconds)",
                    "number",
                    config.delay_between_batches_seconds,
                    step="any",
                ),
                Field_(
                    "delay_between_stages_seconds",
                    "Delay between stages (seconds)",
                    "number",
                    config.delay_between_stages_seconds,
                    step="any",
                ),
            ],
        ),
        Section(
            "Limits per run (0 = no limit)",
            [
                Field_(
                    f"limits.{name}",
                    _limit_label(name).capitalize(),
                    "number",
                    getattr(config.limits, name),
                    step="any" if name == "max_credits_per_run" else "1",
                )
                for name in Limits.model_fields
            ],
        ),
        Section(
            "Budget shares (percent of the credit cap)",
            [
                Field_(
                    "budget_shares_override", "Use this site's own shares", "checkbox", config.budget_shares is not None
                ),
                *(
                    Field_(f"budget_shares.{name}", f"Share: {name.replace('_', ' ')}", "number", shares.get(name, pct))
                    for name, pct in DEFAULT_SHARES.items()
                ),
            ],
        ),
        Section(
            "Writing and images",
            [
                Field_(
                    "options.similarity_threshold",
                    "Clustering similarity threshold",
                    "number",
                    "" if opts.similarity_threshold is None else opts.similarity_threshold,
                    step="any",
                    hint="blank: calibrated from the site's own keywords (recommended); a number: a fixed cosine",
                ),
                Field_("options.min_cluster_size", "Smallest cluster", "number", opts.min_cluster_size),
                Field_("options.ideas_per_cluster", "Ideas per cluster", "number", opts.ideas_per_cluster),
                Field_("options.target_words", "Target words per article", "number", opts.target_words),
                Field_("options.sections_per_image", "Sections per image", "number", opts.sections_per_image),
                Field_("options.image_size", "Image size (WxH)", "text", opts.image_size),
                Field_(
                    "options.image_quality",
                    "Image quality",
                    "select",
                    opts.image_quality,
                    [("low", "low"), ("medium", "medium"), ("high", "high")],
                ),
                Field_("options.language", "Language", "text", opts.language),
                Field_("options.tone", "Tone", "text", opts.tone),
                Field_("options.audience", "Audience", "text", opts.audience),
                Field_("options.brand_notes", "Brand notes", "textarea", opts.brand_notes),
                Field_("options.banned_words", "Banned words (one per line)", "textarea", "\n".join(opts.banned_words)),
                Field_(
                    "options.prompt_templates",
                    "Prompt templates (JSON object: name → template)",
                    "textarea",
                    json.dumps(opts.prompt_templates, indent=2) if opts.prompt_templates else "",
                ),
            ],
        ),
    ]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def patch_from_form(form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    """The patch body the form stands for (every field: the dialog always sends the whole config) and the
    errors found before pydantic sees it (a prompt-templates box that is not JSON)."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "is_enabled": "is_enabled" in form,
        "frequency": _text(form, "frequency"),
        "scheduled_time": _text(form, "scheduled_time"),
        "timezone": _text(form, "timezone").strip(),
        "weekly_day": _text(form, "weekly_day"),
        "monthly_day": _text(form, "monthly_day"),
        "stage_enabled": {str(s): f"stage_enabled.{s}" in form for s in STAGES},
        "batch_sizes": {str(s): _text(form, f"batch_sizes.{s}") for s in STAGES},
        "delay_between_batches_seconds": _text(form, "delay_between_batches_seconds"),
        "delay_between_stages_seconds": _text(form, "delay_between_stages_seconds"),
        "limits": {name: _text(form, f"limits.{name}") for name in Limits.model_fields},
        "budget_shares": {name: _text(form, f"budget_shares.{name}") for name in DEFAULT_SHARES}
        if "budget_shares_override" in form
        else None,
    }
    options: dict[str, Any] = {
        name: _text(form, f"options.{name}")
        for name in StageOptions.model_fields
        if name not in {"banned_words", "prompt_templates"}
    }
    # Blank = no override: the clusterer calibrates the threshold from the site's keywords (issue 10).
    options["similarity_threshold"] = options["similarity_threshold"].strip() or None
    options["banned_words"] = [w.strip() for w in _text(form, "options.banned_words").splitlines() if w.strip()]
    templates = _text(form, "options.prompt_templates").strip()
    try:
        options["prompt_templates"] = json.loads(templates) if templates else {}
    except ValueError as exc:
        errors["options.prompt_templates"] = f"not a JSON object: {exc}"
    body["options"] = options
    return body, errors


def check(form: FormData, current: SiteConfig) -> dict[str, str]:
    """Every message the form deserves, by field: the form's own checks, the patch's, and the merged
    config's (time zone, shares summing to 100, ...), all at once."""
    body, errors = patch_from_form(form)
    for stage in STAGES:
        raw = _text(form, f"batch_sizes.{stage}")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            errors[f"batch_sizes.{stage}"] = "a batch size is a whole number from 1 to 1000"
    patch, more = validate(body)
    if patch is None:  # check the rest too: leave out what failed on its own and merge what is left
        patch, _ = validate({k: v for k, v in body.items() if not any(e.split(".")[0] == k for e in more)})
    if patch is not None:
        try:
            patch.apply(current)
        except ValidationError as exc:
            more = messages(exc) | more
    if any(key.startswith("batch_sizes.") for key in errors):
        more.pop("batch_sizes", None)  # said per field already
    return more | errors


def validate(body: dict[str, Any]) -> tuple[SiteConfigPatch | None, dict[str, str]]:
    try:
        return SiteConfigPatch.model_validate(body), {}
    except ValidationError as exc:
        return None, messages(exc)


def messages(exc: ValidationError) -> dict[str, str]:
    """pydantic's errors keyed by form field name (`limits.max_keywords_per_run`, `batch_sizes.1`, ...)."""
    out: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        loc = [str(p) for p in error["loc"] if not str(p).startswith("function-after")]
        key = (
            ".".join(loc[:2])
            if loc and loc[0] in {"limits", "options", "batch_sizes", "stage_enabled"}
            else (loc[0] if loc else "form")
        )
        if key == "budget_shares" and len(loc) > 1:
            key = f"budget_shares.{loc[1]}"
        message = str(error["msg"]).removeprefix("Value error, ")
        out.setdefault(key, message)
    return out
