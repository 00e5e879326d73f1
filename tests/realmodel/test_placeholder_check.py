"""The yardstick of the real-model tier catches what the issue's trial run produced, and passes clean text."""

from __future__ import annotations

import pytest

from tests.realmodel.placeholders import problems

pytestmark = pytest.mark.realmodel

CLEAN = """Sourdough bread needs flour, water, salt and a lively starter.

## How to make sourdough bread

Mix the starter with water, add flour and rest the dough for an hour before the salt goes in.

### Shaping

Fold the dough gently and let it rise overnight in the fridge.

## Recommended recipes

A plain country loaf is the best first bake; rye comes next.

## FAQ

### How long does a starter take?

About a week of daily feeding.
"""


def check(body: str, title: str = "Sourdough bread at home") -> list[str]:
    return problems(title=title, meta_title=title, meta_description="How to bake it.", body_markdown=body)


def test_clean_draft_passes() -> None:
    assert check(CLEAN) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Intro.\n\n## 2. How to make sourdough bread\n\nLARGE_30\n", "constant-like token"),
        ("Intro.\n\n## Recipes\n\nsection_description\n", "schema/field name"),
        ("Intro.\n\n## Recipes\n\nWrite about $heading here.\n", "template variable"),
        ("Intro.\n\n## Recipes\n\nSee [Insert recipe link].\n", "bracketed placeholder"),
        ("Intro.\n\n## Recipes\n\nLorem ipsum dolor sit amet.\n", "filler text"),
        ("Intro.\n\n## Recipes\n\nBake 1111111111111 loaves.\n", "runaway repetition"),
        ("Intro.\n\n## Recipes\n\n" + "Look at your shoes, " * 5 + "8.\n", "runaway phrase"),
        ("Intro.\n\n## Recipes\n\n## Tips\n\nUse rye.\n", "empty section 'Recipes'"),
        ("Intro.\n\n## Recipes\n\n### Rye\n\n## Tips\n\nUse rye.\n", "empty section 'Recipes'"),
        ("Intro.\n\n## Tips\n\nUse rye.\n\n## Tips\n\nUse spelt.\n", "repeated headings"),
        ("Intro.\n\n## Tips\n\nUse rye.\n\n## More\n\nUse rye.\n", "two sections have the same text"),
        ("Intro.\n\n## 2.\n\nUse rye.\n", "degenerate heading"),
        ("Just text, no sections.", "body has no ## section"),
    ],
)
def test_each_defect_is_named(body: str, expected: str) -> None:
    found = check(body)
    assert any(expected in p for p in found), found


def test_looping_title_is_caught() -> None:
    assert any("title" in p for p in check(CLEAN, title="1111111111111111111111"))
