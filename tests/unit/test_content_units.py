"""Pure pieces of content management and the dashboard: the centroid of a cluster's members, images placed
in a draft's preview, the configure dialog's form mapping, the sign-in redirect, the targeted scope."""

from __future__ import annotations

import numpy as np
from starlette.datastructures import FormData

from services.orchestrator.config import DEFAULT_SHARES, Limits, RunTarget, SiteConfig
from services.orchestrator.content.repository import mean_centroid
from services.orchestrator.dashboard import forms
from services.orchestrator.dashboard.pages_site import _local
from services.orchestrator.dashboard.render import place_images
from tests.markup import executable_markup


def vec(*values: float) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def test_centroid_is_the_mean_of_the_majority_model() -> None:
    members = [("m", vec(1, 0)), ("m", vec(0, 1)), ("old", vec(5, 5, 5))]
    centroid = np.frombuffer(mean_centroid(members, vec(0, 0)), dtype="<f4")
    assert np.allclose(centroid, [0.5, 0.5])  # a raw mean, as the clusterer keeps it (issue 10)


def test_an_empty_cluster_gets_a_zero_centroid_of_its_width() -> None:
    assert np.frombuffer(mean_centroid([], vec(0.6, 0.8, 0)), dtype="<f4").tolist() == [0, 0, 0]


def test_images_go_after_their_section_escaped() -> None:
    body = "<p>intro</p><h2>One</h2><p>a</p><h2>Two</h2><p>b</p>"
    images = [
        {"placement": "featured", "url": "/f", "alt_text": "f", "caption": "", "width": 1, "height": 1},
        {
            "placement": "after-section-1",
            "url": "/x",
            "alt_text": 'a "quote" <b>',
            "caption": "<script>",
            "width": 2,
            "height": 2,
        },
        {"placement": "somewhere", "url": "/y", "alt_text": "y", "caption": "", "width": None, "height": None},
    ]
    html = str(place_images(body, images))
    assert html.index('src="/x"') < html.index("<h2>Two") and html.endswith('alt="y"></figure>')
    assert 'src="/f"' not in html  # the featured image is shown above the body
    assert not executable_markup(html) and "&lt;script&gt;" in html


def test_config_form_maps_to_a_patch_and_messages_to_fields() -> None:
    form = FormData(
        [
            ("frequency", "weekly"),
            ("scheduled_time", "06:30"),
            ("timezone", "Europe/Berlin"),
            ("weekly_day", "2"),
            ("monthly_day", "31"),
            ("stage_enabled.1", "on"),
            *((f"batch_sizes.{s}", "5") for s in range(1, 7)),
            ("delay_between_batches_seconds", "0"),
            ("delay_between_stages_seconds", "1.5"),
            *((f"limits.{n}", "0") for n in Limits.model_fields),
            *(
                (f"options.{n}", "" if v is None else str(v))
                for n, v in SiteConfig().options.model_dump().items()
                if n not in {"banned_words", "prompt_templates"}
            ),
            ("options.banned_words", "cheap\n  \nfree"),
            ("options.prompt_templates", ""),
        ]
    )
    assert forms.check(form, SiteConfig()) == {}
    body, _ = forms.patch_from_form(form)
    patch, errors = forms.validate(body)
    assert patch is not None and not errors
    config = patch.apply(SiteConfig())
    assert config.stage_enabled == {1: True, 2: False, 3: False, 4: False, 5: False, 6: False}
    assert config.options.banned_words == ["cheap", "free"] and config.batch_sizes[4] == 5
    assert not config.is_enabled and config.budget_shares is None
    assert config.options.similarity_threshold is None  # blank: calibrated

    shares = [(f"budget_shares.{k}", "90" if k == "content" else str(v)) for k, v in DEFAULT_SHARES.items()]
    bad = FormData([*form.multi_items(), ("budget_shares_override", "on"), *shares])
    bad = FormData(
        [(k, "Mars/Base" if k == "timezone" else "0" if k == "batch_sizes.3" else v) for k, v in bad.multi_items()]
    )
    messages = forms.check(bad, SiteConfig())
    assert "unknown time zone" in messages["timezone"]
    assert "1 to 1000" in messages["batch_sizes.3"] and "batch_sizes" not in messages
    assert "sum to 100" in messages["budget_shares"]
    blank = FormData([(k, "" if k == "options.target_words" else v) for k, v in bad.multi_items()])
    messages = forms.check(blank, SiteConfig())  # a field that fails alone does not hide the others
    assert "options.target_words" in messages and "timezone" in messages


def test_sign_in_only_goes_back_into_the_dashboard() -> None:
    assert _local("/dashboard/sites/abc") == "/dashboard/sites/abc"
    for evil in ("https://evil.example/", "//evil.example/dashboard/", "/dashboard/..//x", "/\\evil", "/api/v1/me"):
        assert _local(evil) == "/dashboard/"


def test_a_target_includes_only_its_stages() -> None:
    target = RunTarget(stage=4, item_ids=[7], stages=[4, 5, 6, 7])
    assert [s for s in range(1, 8) if target.includes(s)] == [4, 5, 6, 7]
    assert not RunTarget(stage=2, item_ids=[1], stages=[2, 3]).includes(4)
