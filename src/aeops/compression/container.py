"""The `.aez` file: a header naming the model and the images, then range-coded segments of codes.

Layout (little-endian):
    b"AEZ" + format byte | uint32 header bytes | uint32 CRC-32 | header: LZMA-compressed JSON |
    segments: uint32 rows | uint32 words | uint32 CRC-32 | words × uint32 (the range coder's output)
The header holds the model (registry name, version and a fingerprint of its weights, scaler and
prior), the coder (table recipe and constriction version), the image shape, the quantisation error,
the image count, relative file names and original sizes. The CRCs catch altered bytes: a range
decoder reads any words without complaint, so a flipped bit would otherwise decode to wrong images.
"""

from __future__ import annotations

import json
import lzma
import struct
import zlib
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from aeops.errors import DataError

MAGIC, FORMAT = b"AEZ", 1
_U32 = struct.Struct("<I")
_SEGMENT = struct.Struct("<III")
REQUIRED = {"model": dict, "coder": dict, "image_shape": list, "error": (int, float), "count": int, "names": list}


def write_header(fh: BinaryIO, header: dict[str, Any]) -> int:
    body = lzma.compress(json.dumps({"format": FORMAT, **header}, separators=(",", ":")).encode(),
                         format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
    fh.write(MAGIC + bytes([FORMAT]) + _U32.pack(len(body)) + _U32.pack(zlib.crc32(body)) + body)
    return 12 + len(body)


def write_segment(fh: BinaryIO, rows: int, words: np.ndarray) -> int:
    data = np.asarray(words, "<u4").tobytes()
    fh.write(_SEGMENT.pack(rows, len(data) // 4, zlib.crc32(data)) + data)
    return _SEGMENT.size + len(data)


def read_header(fh: BinaryIO, name: str) -> dict[str, Any]:
    start = fh.read(12)
    if len(start) < 12 or start[:3] != MAGIC:
        raise DataError(f"{name}: not an aeops compressed file (expected one written by `aeops compress`)")
    if start[3] != FORMAT:
        raise DataError(f"{name}: .aez format {start[3]}, this aeops reads format {FORMAT}")
    size, crc = _U32.unpack(start[4:8])[0], _U32.unpack(start[8:])[0]
    body = fh.read(size)
    if len(body) < size or zlib.crc32(body) != crc:
        raise DataError(f"{name}: damaged header (truncated or altered file)")
    try:
        header = json.loads(lzma.decompress(body, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]))
    except (lzma.LZMAError, ValueError, EOFError):
        raise DataError(f"{name}: damaged header (truncated or altered file)") from None
    _check_header(header, name)
    return header


def _check_header(header: Any, name: str) -> None:
    """Fields, types and file names a decoder relies on (a crafted header must not write outside OUT_DIR)."""
    if not isinstance(header, dict):
        raise DataError(f"{name}: damaged header (not an object)")
    for key, kind in REQUIRED.items():
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise DataError(f"{name}: damaged header (field '{key}' missing or of the wrong type)")
    count, names, sizes = header["count"], header["names"], header.get("sizes")
    if len(names) != count or (sizes is not None and (not isinstance(sizes, list) or len(sizes) != count)):
        raise DataError(f"{name}: damaged header ({count} images but {len(names)} names)")
    if sizes is not None and not all(isinstance(v, list) and len(v) == 2 and all(isinstance(n, int) and 0 < n < 1 << 16
                                                                              for n in v) for v in sizes):
        raise DataError(f"{name}: damaged header (image sizes are not [width, height] pairs)")
    seen = set()
    for item in names:
        parts = PurePosixPath(item).parts if isinstance(item, str) else ()
        if not parts or item.startswith("/") or any(p in ("..", ".") or "\\" in p for p in parts):
            raise DataError(f"{name}: unsafe or empty file name {item!r} in the header (altered file?)")
        out = str(PurePosixPath(item).with_suffix(".png"))
        if out in seen:
            raise DataError(f"{name}: file name {item!r} twice in the header (altered file?)")
        seen.add(out)


def read_segments(fh: BinaryIO, name: str, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """(rows, words) per segment until `count` rows are read; a short or overlong file is one line."""
    seen = 0
    while seen < count:
        head = fh.read(_SEGMENT.size)
        if len(head) < _SEGMENT.size:
            raise DataError(f"{name}: truncated: {seen} of {count} images present")
        rows, n, crc = _SEGMENT.unpack(head)
        data = fh.read(4 * n)
        if len(data) < 4 * n or rows == 0 or seen + rows > count:
            raise DataError(f"{name}: truncated or damaged after {seen} of {count} images")
        if zlib.crc32(data) != crc:
            raise DataError(f"{name}: damaged: the codes of images {seen + 1}–{seen + rows} fail their checksum")
        seen += rows
        yield rows, np.frombuffer(data, "<u4").astype(np.uint32)
    if fh.read(1):
        raise DataError(f"{name}: unexpected bytes after the last image (damaged or concatenated file)")
