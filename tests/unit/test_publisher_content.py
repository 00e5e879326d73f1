"""What a draft becomes on WordPress: sanitised body, images at their placements, terms, SEO fields."""

from __future__ import annotations

import pytest

from services.publisher import content
from services.publisher.content import PlacedImage
from services.publisher.service import PermanentFailure, PublisherService
from shared.contracts import CategoryMapping, TagMapping
from shared.db.models import WordPressConnection

BODY = "<p>Intro.</p>\n<h2>One</h2>\n<p>a</p>\n<h2>Two</h2>\n<p>b</p>\n<h2>Conclusion</h2>\n<p>c</p>"


def image(placement: str, media_id: int) -> PlacedImage:
    return PlacedImage(placement, media_id, f"http://wp.test/u/{media_id}.png", f"alt {media_id}", f"cap {media_id}")


def test_sanitise_drops_scripts_handlers_and_javascript_urls_but_keeps_article_markup() -> None:
    dirty = (
        '<h2 onclick="x()">Title</h2><script>alert(1)</script><p>A <a href="javascript:alert(1)">bad</a> and '
        '<a href="https://example.com/x" title="t">good</a> link.</p><iframe src="https://evil"></iframe>'
        "<table><tr><td>1</td></tr></table><!-- a comment -->"
    )
    clean = content.sanitise(dirty)
    assert "<script" not in clean and "onclick" not in clean and "javascript:" not in clean
    assert "<iframe" not in clean and "comment" not in clean
    assert "<h2>Title</h2>" in clean
    assert 'href="https://example.com/x"' in clean and "<td>1</td>" in clean


def test_featured_image_stays_out_of_the_body_others_go_after_their_section() -> None:
    placed = content.place_images(BODY, [image("featured", 1), image("after-section-1", 2)])
    assert "wp-image-1" not in placed
    figure_at, two_at, one_at = placed.index("wp-image-2"), placed.index("<h2>Two"), placed.index("<h2>One")
    assert one_at < figure_at < two_at
    assert '<img src="http://wp.test/u/2.png" alt="alt 2" class="wp-image-2"/>' in placed
    assert "<figcaption>cap 2</figcaption>" in placed


def test_a_section_past_the_last_heading_or_an_unknown_placement_goes_last() -> None:
    placed = content.place_images(BODY, [image("after-section-3", 3), image("somewhere", 4)])
    assert placed.index("wp-image-3") > placed.index("<h2>Conclusion") and placed.index("wp-image-4") > 0
    assert placed.startswith(BODY)


def test_images_in_the_same_spot_keep_their_order() -> None:
    placed = content.place_images(BODY, [image("after-section-2", 5), image("after-section-2", 6)])
    assert placed.index("wp-image-5") < placed.index("wp-image-6") < placed.index("<h2>Conclusion")


def test_captions_and_alt_text_are_escaped() -> None:
    img = PlacedImage("after-section-1", 9, "http://wp.test/a.png", 'a "quoted" <alt>', "x < y & z")
    html = content.figure(img)
    assert 'alt="a &quot;quoted&quot; &lt;alt&gt;"' in html and "<figcaption>x &lt; y &amp; z</figcaption>" in html


def test_image_sources_pointing_at_the_media_store_are_rewritten() -> None:
    body = '<p><img src="/data/media/s1/7/0-3.png" alt="a"><img src="0-4.png?x=1"><img src="https://cdn/x.png"></p>'
    out = content.rewrite_image_sources(
        body, {"/data/media/s1/7/0-3.png": "http://wp/3.png", "s1/7/0-4.png": "http://wp/4.png"}
    )
    assert 'src="http://wp/3.png"' in out and 'src="http://wp/4.png"' in out and 'src="https://cdn/x.png"' in out


def test_categories_default_plus_the_cluster_mapped_or_as_is() -> None:
    mapping = CategoryMapping(default=["Guides"], by_cluster={"Coffee Grinders": ["Coffee", "Kitchen"]})
    assert content.categories_for(mapping, "coffee grinders") == ["Guides", "Coffee", "Kitchen"]
    assert content.categories_for(mapping, "dog training") == ["Guides", "dog training"]
    assert content.categories_for(CategoryMapping(cluster_as_category=False), "dog training") == []
    assert content.categories_for(CategoryMapping(default=["A", "a", " A "]), None) == ["A"]


def test_tags_from_keywords_renamed_dropped_extra_and_capped() -> None:
    mapping = TagMapping(rename={"burr grinder": "Burr grinders", "cheap grinder": ""}, extra=["Reviews"], max_tags=3)
    keywords = ["burr grinder", "cheap grinder", "manual grinder", "Manual Grinder", "espresso grinder"]
    assert content.tags_for(mapping, keywords) == ["Burr grinders", "manual grinder", "espresso grinder"]
    assert content.tags_for(TagMapping(from_keywords=False, extra=["x"]), keywords) == ["x"]


def test_term_names_compare_as_wordpress_shows_them() -> None:
    assert content.term_key("Tips &amp; Tricks") == content.term_key("tips  & tricks")


def test_seo_fields_of_yoast_or_rank_math_else_a_note() -> None:
    assert content.seo_meta({"_yoast_wpseo_title", "_yoast_wpseo_metadesc"}, "T", "D") == (
        {"_yoast_wpseo_title": "T", "_yoast_wpseo_metadesc": "D"},
        None,
    )
    fields, note = content.seo_meta({"rank_math_title", "rank_math_description", "contentline_key"}, "T", "D")
    assert fields == {"rank_math_title": "T", "rank_math_description": "D"} and note is None
    fields, note = content.seo_meta({"contentline_key", "rank_math_title"}, "T", "D")
    assert fields == {} and note is not None and "skipped" in note


def test_markers_name_the_site_and_the_object() -> None:
    assert content.draft_marker("s1", 42) == "draft:s1:42"
    assert content.image_marker("s1", 7) == "image:s1:7"


def test_an_invalid_stored_mapping_fails_the_draft_naming_the_field() -> None:
    conn = WordPressConnection(category_mapping={"default": "Guides", "colour": 1}, tag_mapping={})
    with pytest.raises(PermanentFailure) as caught:
        PublisherService._mappings(conn)
    assert str(caught.value).startswith("the site's category or tag mapping is invalid: default: Input should be")
    assert "colour: Extra inputs are not permitted" in str(caught.value)
