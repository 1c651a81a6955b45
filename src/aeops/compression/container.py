"""The `.aez` file: a header naming the model and the images, then range-coded segments of codes.

Layout (little-endian):
    b"AEZ" + format byte | uint32 header bytes | header: LZMA-compressed JSON |
    segments: uint32 rows | uint32 words | words × uint32 (constriction's range-coder output)
The header holds the model (registry name, version and a fingerprint of its weights and prior),
the image shape, the quantisation error, the image count, relative file names and original sizes.
"""

from __future__ import annotations

import json
import lzma
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from aeops.errors import DataError

MAGIC, FORMAT = b"AEZ", 1
_U32 = struct.Struct("<I")
_SEGMENT = struct.Struct("<II")


def write_header(fh: BinaryIO, header: dict[str, Any]) -> int:
    body = lzma.compress(json.dumps({"format": FORMAT, **header}, separators=(",", ":")).encode(),
                         format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
    fh.write(MAGIC + bytes([FORMAT]) + _U32.pack(len(body)) + body)
    return 8 + len(body)


def write_segment(fh: BinaryIO, rows: int, words: np.ndarray) -> int:
    data = np.asarray(words, "<u4").tobytes()
    fh.write(_SEGMENT.pack(rows, len(data) // 4) + data)
    return _SEGMENT.size + len(data)


def read_header(fh: BinaryIO, name: str) -> dict[str, Any]:
    start = fh.read(8)
    if len(start) < 8 or start[:3] != MAGIC:
        raise DataError(f"{name}: not an aeops compressed file (expected one written by `aeops compress`)")
    if start[3] != FORMAT:
        raise DataError(f"{name}: .aez format {start[3]}, this aeops reads format {FORMAT}")
    (size,) = _U32.unpack(start[4:])
    body = fh.read(size)
    try:
        header = json.loads(lzma.decompress(body, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]))
    except (lzma.LZMAError, ValueError, EOFError):
        raise DataError(f"{name}: damaged header (truncated or altered file)") from None
    return header


def read_segments(fh: BinaryIO, name: str, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """(rows, words) per segment until `count` rows are read; a short or overlong file is one line."""
    seen = 0
    while seen < count:
        head = fh.read(_SEGMENT.size)
        if len(head) < _SEGMENT.size:
            raise DataError(f"{name}: truncated: {seen} of {count} images present")
        rows, n = _SEGMENT.unpack(head)
        data = fh.read(4 * n)
        if len(data) < 4 * n or rows == 0 or seen + rows > count:
            raise DataError(f"{name}: truncated or damaged after {seen} of {count} images")
        seen += rows
        yield rows, np.frombuffer(data, "<u4").astype(np.uint32)
    if fh.read(1):
        raise DataError(f"{name}: unexpected bytes after the last image (damaged or concatenated file)")
