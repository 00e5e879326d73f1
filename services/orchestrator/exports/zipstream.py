"""A zip archive written as it is sent: the standard library's zipfile over a sink that hands the bytes on.

zipfile writes to a stream it cannot seek (it then puts each member's sizes in a data descriptor after the
data), so nothing is buffered but the member being added; no third-party streaming zip library needed.
"""

from __future__ import annotations

import io
import time
import zipfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class _Sink(io.RawIOBase):
    """Write-only and unseekable on purpose: zipfile then streams (data descriptors, no seeking back)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class ZipStream:
    """`add` a member and get the bytes to send; `close` gives the central directory."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w")
        self._when = time.localtime()[:6]

    def add(self, name: str, data: bytes, compress: bool = True) -> bytes:
        info = zipfile.ZipInfo(name, date_time=self._when)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED  # images are compressed already
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, data)
        return self._sink.take()

    def close(self) -> bytes:
        self._zip.close()
        return self._sink.take()
