"""Keyword and model text never becomes live markup: a hostile corpus through every layer of shared/safe_html."""

from __future__ import annotations

import markdown
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.safe_html import inert_markdown, render_markdown, sanitise_html
from tests.markup import executable_markup

# OWASP XSS filter evasion cheat sheet style: scripts, handlers, script URLs, data URLs, styles, mXSS,
# nested and broken tags, entity and whitespace tricks.
HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<img src="x" onerror="&#x61;lert(1)">',
    "<img src=x onerror=alert(1)//",
    '<IMG SRC="jav\tascript:alert(1);">',
    "<img srcset=\"javascript:alert(1)\" src='/media/a.png'>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">x</text></a></svg>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#x6A;avascript&colon;alert(1)">x</a>',
    '<a href="java\x00script:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    "<body onload=alert(1)>",
    '<div onmouseover="alert(1)">hover</div>',
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<div style="width: expression(alert(1))">x</div>',
    "<style>@import 'javascript:alert(1)';</style>",
    '<link rel="stylesheet" href="javascript:alert(1)">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:/">',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe/src="data:text/html,<svg onload=alert(1)>">',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="data:text/html,<script>alert(1)</script>">',
    '<form action="javascript:alert(1)"><button>go</button></form>',
    "<input onfocus=alert(1) autofocus>",
    "<details open ontoggle=alert(1)>",
    "<video><source onerror=alert(1)></video>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<<script>script>alert(1)<</script>/script>",
    '<img """><script>alert(1)</script>">',
    "<!--<img src=x onerror=alert(1)>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<template><script>alert(1)</script></template>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "</textarea><script>alert(1)</script>",
]
# The same attacks in Markdown syntax.
HOSTILE_MARKDOWN = [
    "[x](javascript:alert(1))",
    "[x](  JaVaScRiPt:alert(1) 'title')",
    "[x](<javascript:alert(1)>)",
    "[x](jav&#x61;script:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "[x]\n\n[x]: javascript:alert(1)",
    "<javascript:alert(1)>",
    "## Heading <img src=x onerror=alert(1)>",
    "- item <script>alert(1)</script>",
    "| a |\n|---|\n| <img src=x onerror=alert(1)> |",
    "> quote <svg onload=alert(1)>",
    "# Title {onclick=alert(1)}",
    '<div markdown="1">*x* <script>alert(1)</script></div>',
]
CORPUS = HOSTILE + HOSTILE_MARKDOWN


@pytest.mark.parametrize("attack", CORPUS)
def test_sanitiser_leaves_nothing_executable(attack: str) -> None:
    assert executable_markup(sanitise_html(attack)) == []


@pytest.mark.parametrize("attack", CORPUS)
def test_rendered_markdown_is_inert(attack: str) -> None:
    text = f"Intro with {attack} inside.\n\n{attack}\n\n## {attack}\n\n- {attack}\n"
    assert executable_markup(render_markdown(text)) == []
    assert executable_markup(render_markdown(inert_markdown(text))) == []


@pytest.mark.parametrize("attack", CORPUS)
def test_stored_markdown_is_inert_even_for_a_renderer_that_passes_raw_html(attack: str) -> None:
    # A CMS connector may render body_markdown itself, with raw HTML on (Python-Markdown's default).
    text = f"Intro with {attack} inside.\n\n{attack}\n\n## {attack}\n"
    assert executable_markup(markdown.markdown(inert_markdown(text), extensions=["extra"])) == []


def test_the_checker_itself_sees_the_attacks() -> None:
    # executable_markup must be able to fail: raw, the corpus is flagged, except what a browser too parses
    # as inert (entities, a tag cut off by the end of input, a bogus tag name, CDATA outside SVG).
    inert_raw = {
        "<img src=x onerror=alert(1)//",
        "<scr<script>ipt>alert(1)</scr</script>ipt>",
        "<![CDATA[<script>alert(1)</script>]]>",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&#60;img src=x onerror=alert(1)&#62;",
    }
    assert {a for a in HOSTILE if not executable_markup(a)} == inert_raw
    assert executable_markup(markdown.markdown("[x](javascript:alert(1))\n\n<img src=x onerror=alert(1)>"))


def test_script_text_shows_as_text() -> None:
    html = render_markdown("## Best <script>alert(1)</script> tips\n\nUse <img src=x onerror=alert(1)> wisely.")
    assert "<h2>Best &lt;script&gt;alert(1)&lt;/script&gt; tips</h2>" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_normal_markdown_survives() -> None:
    source = (
        'Intro with **bold**, *em*, `code` and a [link](https://example.com/a?b=1&c=2 "Title").\n\n'
        "## Choosing <shoes> & socks\n\n"
        "### Sizes\n\n"
        "1. first\n2. second\n\nThen:\n\n"
        "- a\n- b\n\n"
        "![Featured image](media/site-1/42/0-7.png)\n\n"
        "> a quote\n\n"
        "| Model | Price |\n|:---|---:|\n| A | 10 |\n\n"
        "```\nx = 1 < 2\n```\n\n"
        "Mail [us](mailto:team@example.com) or see <https://example.com/docs>.\n"
    )
    html = render_markdown(inert_markdown(source))
    for part in (
        "<strong>bold</strong>",
        "<em>em</em>",
        "<code>code</code>",
        '<a href="https://example.com/a?b=1&amp;c=2" title="Title" rel="noopener noreferrer">link</a>',
        "<h2>Choosing &lt;shoes&gt; &amp; socks</h2>",
        "<h3>Sizes</h3>",
        "<ol>\n<li>first</li>",
        "<ul>\n<li>a</li>",
        '<img alt="Featured image" src="media/site-1/42/0-7.png">',
        "<blockquote>",
        '<th align="left">Model</th>',
        '<td align="right">10</td>',
        "<pre><code>x = 1 &lt; 2\n</code></pre>",
        '<a href="mailto:team@example.com" rel="noopener noreferrer">us</a>',
        '<a href="https://example.com/docs" rel="noopener noreferrer">https://example.com/docs</a>',
    ):
        assert part in html, (part, html)


def test_plain_text_and_code_are_not_touched_by_inert_markdown() -> None:
    plain = "## Best running shoes\n\nA < B and 3 > 2, R&D, [a link](https://example.com).\n"
    assert inert_markdown(plain) == plain
    code = "Use `<div>` here.\n\n```html\n<script>kept as code</script>\n```\n"
    assert inert_markdown(code) == code


def test_remote_and_data_images_are_dropped_media_paths_kept() -> None:
    html = sanitise_html('<img src="https://tracker.example/p.gif"><img src="//cdn.example/x.png"><img src="/m/a.png">')
    assert html == '<img><img><img src="/m/a.png">'


# Text made of the pieces attacks are built from: whatever order they come in, nothing executable comes out.
_PIECES = st.sampled_from(
    [
        "<", ">", "/", '"', "'", "=", "&", "#", ";", ":", "(", ")", "[", "]", "!", "`", " ", "\n", "\t", "\x00",
        "script", "img", "svg", "a", "style", "iframe", "src", "href", "onerror", "onload", "javascript",
        "data", "alert(1)", "&#x6A;", "&lt;", "x", "##", "-", "|", "```",
    ]
)  # fmt: skip


@settings(
    max_examples=400, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_no_arrangement_of_attack_pieces_gets_through(text: str) -> None:
    assert executable_markup(render_markdown(text)) == []
    assert executable_markup(markdown.markdown(inert_markdown(text))) == []
    once = sanitise_html(text)
    assert sanitise_html(once) == once
