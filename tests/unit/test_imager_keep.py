"""What the imager does with a provider's image bytes, in one hand-off to a worker thread: checked, then stored
on the real file system; an unreadable image fails for good, a store that cannot write fails as transient."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fakeai.images import render
from services.imager.service import ImagerService
from services.imager.storage import LocalMediaStorage
from shared.ai import AiError


def imager(root: Path) -> ImagerService:
    unused: Any = None  # neither sessions nor the model client are touched by `_keep`
    return ImagerService(unused, unused, LocalMediaStorage(root))


def test_a_readable_image_is_stored_with_its_checksum(tmp_path: Path) -> None:
    data = render("a trail shoe on a rock", 512, 512, 0)
    kept = imager(tmp_path)._keep(data, "site/7/0-3.png")
    assert not isinstance(kept, AiError)
    mime, width, height, stored = kept
    assert (mime, width, height) == ("image/png", 512, 512)
    assert Path(stored.path).read_bytes() == data and stored.checksum_sha256 == hashlib.sha256(data).hexdigest()


def test_unreadable_bytes_fail_for_good_and_nothing_is_stored(tmp_path: Path) -> None:
    kept = imager(tmp_path)._keep(b"<html>not an image</html>", "site/7/0-3.png")
    assert isinstance(kept, AiError) and not kept.transient and "unreadable image" in kept.reason
    assert not any(tmp_path.rglob("*.png"))


def test_a_store_that_cannot_write_fails_as_transient(tmp_path: Path) -> None:
    (tmp_path / "site").write_text("a file where the site's folder should be")
    kept = imager(tmp_path)._keep(render("a trail shoe", 256, 256, 0), "site/7/0-3.png")
    assert isinstance(kept, AiError) and kept.transient and "could not store the image" in kept.reason
