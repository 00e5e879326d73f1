"""Where image bytes go. `MediaStorage` is the interface an S3-compatible store can implement later."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class StoredObject:
    path: str  # what the database keeps: a path under the media root (or an object key)
    checksum_sha256: str
    size_bytes: int


class MediaStorage(Protocol):
    def put(self, key: str, data: bytes) -> StoredObject: ...


class LocalMediaStorage:
    """Files under a media root; written to a temp name then renamed so a reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, data: bytes) -> StoredObject:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return StoredObject(str(target), hashlib.sha256(data).hexdigest(), len(data))
