"""What a draft becomes in an export: Markdown and a sanitised HTML page whose images point into the zip."""

from __future__ import annotations

import io
import zipfile

from services.orchestrator.exports.bundle import ImageFile, article_html, article_markdown, folder_name, image_name
from services.orchestrator.exports.zipstream import ZipStream

BODY_MD = (
    "Intro text.\n\n## First\n\nOne.\n\n## Second\n\nTwo ![old](/srv/media/s/d/2.png)\n\n```\n## not a heading\n```\n"
)
BODY_HTML = (
    '<p>Intro <script>alert(1)</script></p><h2>First</h2><p>One.</p><h2>Second</h2><p>Two '
    '<img src="/srv/media/s/d/2.png" alt="old"> <img src="/etc/passwd" alt="x"></p>'
)


def images() -> list[ImageFile]:
    return [
        ImageFile("featured", 'Cup "hero"', "A <b>cup</b>", "/srv/media/s/d/1.png",
                  image_name(1, "featured", "x/1.png"), 1024, 768, "ab", b"png1"),
        ImageFile("after-section-1", "Grinder", "", "/srv/media/s/d/2.png", image_name(2, "after-section-1", "2.png"),
                  data=b"png2"),
        ImageFile("after-section-2", "Gone", "", "/srv/media/s/d/3.png", "03-after-section-2.png",
                  missing="cannot be read: No such file or directory"),
    ]  # fmt: skip


def test_markdown_places_images_and_points_them_into_the_zip() -> None:
    md = article_markdown(7, "Best <script> [grinders]", "best-grinders", "Meta", 'Desc "quoted"', BODY_MD, images())
    assert md.startswith('---\ntitle: "Best <script> [grinders]"\nslug: "best-grinders"')
    assert "\n# Best &lt;script> \\[grinders\\]\n" in md
    featured = md.index("![Cup \"hero\"](images/01-featured.png)\n*A &lt;b>cup&lt;/b>*")
    second_image = md.index("![Grinder](images/02-after-section-1.png)")
    assert featured < md.index("Intro text.") < md.index("## First") < second_image < md.index("## Second")
    assert "Two ![old](images/02-after-section-1.png)" in md  # the body's own reference to a media file
    assert "Gone" not in md and "```\n## not a heading\n```" in md  # a missing image is left out


def test_html_is_sanitised_standalone_and_refers_to_the_zip_only() -> None:
    page = article_html("T <i>", 'D "q"', BODY_HTML, images(), lang="en")
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">') and "<title>T &lt;i&gt;</title>" in page
    assert '<meta name="description" content="D &quot;q&quot;">' in page
    assert "<script>" not in page and "alert(1)" not in page
    assert '<img src="images/01-featured.png" alt="Cup &quot;hero&quot;" width="1024" height="768">' in page
    assert "<figcaption>A &lt;b&gt;cup&lt;/b&gt;</figcaption>" in page
    body = page.split("<h1>")[1]
    assert body.index("images/02-after-section-1.png") < body.index("<h2>Second</h2>")
    assert 'src="images/02-after-section-1.png" alt="old"' in page  # rewritten from the media path
    assert "/etc/passwd" not in page and "/srv/media" not in page and "03-after" not in page


def test_names_are_safe_and_unique() -> None:
    assert folder_name(12, "Über Café: 10/10 ☕") == "12-ber-caf-10-10"
    assert folder_name(3, "") == "3" and image_name(4, "after-section-2", "/m/a.JPEG") == "04-after-section-2.jpeg"
    assert image_name(1, "featured", "/m/noext") == "01-featured.png"


def test_zip_stream_writes_a_valid_archive_member_by_member() -> None:
    stream = ZipStream()
    chunks = [stream.add("r/a.md", b"# a" * 1000), stream.add("r/images/1.png", b"\x89PNG" + bytes(50), False)]
    chunks.append(stream.close())
    assert all(chunks)  # every member is sent as soon as it is added
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None and archive.namelist() == ["r/a.md", "r/images/1.png"]
    assert archive.getinfo("r/images/1.png").compress_type == zipfile.ZIP_STORED
