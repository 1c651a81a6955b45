"""The `.aez` file: a header naming the model and the images, then range-coded segments of codes.

Layout (little-endian):
    b"AEZ" + format byte | uint32 header bytes | uint32 CRC-32 | header: LZMA-compressed JSON |
    segments: uint32 rows | uint32 words | uint32 CRC-32 | words × uint32 (the range coder's output)
The header holds the model (registry name, version and a fingerprint of its weights, scaler and
prior), the coder (table recipe and constriction version), the image shape, the quantisation error,
the image count, relative file names and original sizes. The CRCs catch altered bytes: a range
decoder reads any words without complaint, so a flipped bit would otherwise decode to wrong images.

A file is untrusted input: every size it declares is bounded before anything is allocated — the
header's compressed size and each segment's words by the bytes the file really has, the unpacked
header by MAX_HEADER_BYTES and its JSON values by MAX_VALUES_PER_IMAGE an image (counted before it is
parsed, so a small header cannot unfold into millions of objects), the images by MAX_IMAGES and
by the segments that can follow, each segment by MAX_SEGMENT_ROWS, each original size by
MAX_IMAGE_PIXELS (what `compress` accepts), names by MAX_NAME_BYTES a part. A file beyond any bound is
refused in one line.
"""

from __future__ import annotations

import json
import lzma
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from aeops.data.images import MAX_IMAGE_PIXELS  # what `compress` accepts: the bound on an original's size
from aeops.errors import DataError

MAGIC, FORMAT = b"AEZ", 1
_U32 = struct.Struct("<I")
_SEGMENT = struct.Struct("<III")
REQUIRED = {"model": dict, "coder": dict, "image_shape": list, "error": (int, float), "count": int, "names": list}
MAX_HEADER_BYTES = 64 << 20  # the unpacked JSON header (about 1 M names of 60 characters)
MAX_VALUES_PER_IMAGE = 8  # JSON values ("[", "{", ",") an image may add: a name and a size take 3-4
MAX_IMAGES = 1_000_000
MAX_SEGMENT_ROWS = 4096  # `compress` writes CHUNK (256) images a segment
MAX_NAME_BYTES = 255  # a part of a relative file name (most file systems' limit); 4096 for the whole name
MIN_ERROR, MAX_ERROR = 0.01, 64.0  # gray levels RMS, as `aeops compress --error` allows


def write_header(fh: BinaryIO, header: dict[str, Any]) -> int:
    """Write the header; one line (nothing written) if `read_header` would refuse it for its size."""
    text = json.dumps({"format": FORMAT, **header}, separators=(",", ":")).encode()
    if header.get("count", 0) > MAX_IMAGES or len(text) > MAX_HEADER_BYTES:
        raise DataError(f"{header.get('count')} images with {len(text):,} bytes of names: an .aez file holds at most "
                        f"{MAX_IMAGES:,} images and {MAX_HEADER_BYTES:,} bytes of header; compress the folder in parts")
    body = lzma.compress(text, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
    fh.write(MAGIC + bytes([FORMAT]) + _U32.pack(len(body)) + _U32.pack(zlib.crc32(body)) + body)
    return 12 + len(body)


def write_segment(fh: BinaryIO, rows: int, words: np.ndarray) -> int:
    data = np.asarray(words, "<u4").tobytes()
    fh.write(_SEGMENT.pack(rows, len(data) // 4, zlib.crc32(data)) + data)
    return _SEGMENT.size + len(data)


def _left(fh: BinaryIO) -> int:
    """Bytes between the position and the end of the file."""
    return os.fstat(fh.fileno()).st_size - fh.tell()


def read_header(fh: BinaryIO, name: str) -> dict[str, Any]:
    start = fh.read(12)
    if len(start) < 12 or start[:3] != MAGIC:
        raise DataError(f"{name}: not an aeops compressed file (expected one written by `aeops compress`)")
    if start[3] != FORMAT:
        raise DataError(f"{name}: .aez format {start[3]}, this aeops reads format {FORMAT}")
    size, crc = _U32.unpack(start[4:8])[0], _U32.unpack(start[8:])[0]
    if size > _left(fh):
        raise DataError(f"{name}: damaged header (it declares {size:,} bytes, the file has {_left(fh):,} left)")
    body = fh.read(size)
    if len(body) < size or zlib.crc32(body) != crc:
        raise DataError(f"{name}: damaged header (truncated or altered file)")
    try:
        unpacker = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
        text = unpacker.decompress(body, max_length=MAX_HEADER_BYTES + 1)
        if len(text) > MAX_HEADER_BYTES:
            raise DataError(f"{name}: header unpacks to more than {MAX_HEADER_BYTES:,} bytes (from {size:,} packed "
                            "bytes): refused (altered file?)")
        if not unpacker.eof:
            raise EOFError
        values = text.count(b"[") + text.count(b"{") + text.count(b",")
        if values > MAX_VALUES_PER_IMAGE * MAX_IMAGES:
            raise DataError(f"{name}: header holds {values:,} JSON values, more than {MAX_IMAGES:,} images can "
                            "need: refused (altered file?)")
        header = json.loads(text)
    except (lzma.LZMAError, ValueError, EOFError, RecursionError):
        raise DataError(f"{name}: damaged header (truncated or altered file)") from None
    _check_header(header, name)
    if header["count"] > math.ceil(_left(fh) / _SEGMENT.size) * MAX_SEGMENT_ROWS:
        raise DataError(f"{name}: damaged header ({header['count']:,} images cannot fit in the {_left(fh):,} "
                        "bytes that follow it)")
    return header


def _check_header(header: Any, name: str) -> None:
    """Fields, types and file names a decoder relies on (a crafted header must not write outside OUT_DIR)."""
    if not isinstance(header, dict):
        raise DataError(f"{name}: damaged header (not an object)")
    for key, kind in REQUIRED.items():
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise DataError(f"{name}: damaged header (field '{key}' missing or of the wrong type)")
    count, names, sizes = header["count"], header["names"], header.get("sizes")
    if not 0 < count <= MAX_IMAGES:
        raise DataError(f"{name}: damaged header ({count} images; a file holds 1 to {MAX_IMAGES:,})")
    if len(names) != count or (sizes is not None and (not isinstance(sizes, list) or len(sizes) != count)):
        raise DataError(f"{name}: damaged header ({count} images but {len(names)} names)")
    error = header["error"]
    if not (isinstance(error, (int, float)) and math.isfinite(error) and MIN_ERROR <= error <= MAX_ERROR):
        raise DataError(f"{name}: damaged header (error {error!r} is not a number of gray levels in "
                        f"[{MIN_ERROR:g}, {MAX_ERROR:g}])")
    shape = header["image_shape"]
    if len(shape) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 16 for n in shape):
        raise DataError(f"{name}: damaged header (image_shape {shape!r} is not [channels, height, width])")
    if sizes is not None and not all(isinstance(v, list) and len(v) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 16 for n in v) for v in sizes):
        raise DataError(f"{name}: damaged header (image sizes are not [width, height] pairs)")
    big = next((v for v in sizes or [] if v[0] * v[1] > MAX_IMAGE_PIXELS), None)
    if big is not None:
        raise DataError(f"{name}: an image of {big[0]}×{big[1]} pixels in the header, at most {MAX_IMAGE_PIXELS:,} "
                        "pixels an image (altered file?)")
    check_names(names, name)


def check_names(names: list[Any], name: str, *, hint: str = "altered file?") -> None:
    """Relative, clean, not too long, each written once, no name both a file and a folder
    (`compress` checks the same with its own hint: a file it writes always decompresses)."""
    outputs: set[str] = set()
    folders: set[str] = set()
    for item in names:
        parts = PurePosixPath(item).parts if isinstance(item, str) else ()
        if (not parts or item.startswith("/") or any(p in ("..", ".") or "\\" in p for p in parts)
                or any(ord(ch) < 32 or ch == "\x7f" for ch in item)):
            raise DataError(f"{name}: unsafe or empty file name {str(item)[:80]!r} ({hint})")
        out = PurePosixPath(item).with_suffix(".png")
        if len(str(out).encode("utf-8", "surrogatepass")) > 4096 or any(
                len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for p in out.parts):
            raise DataError(f"{name}: file name {item[:60]!r}… is too long for a file system (at most "
                            f"{MAX_NAME_BYTES} bytes a part, 4096 in all) ({hint})")
        if str(out) in outputs:
            raise DataError(f"{name}: file name {item!r} twice ({hint})")
        outputs.add(str(out))
        folders.update(str(parent) for parent in out.parents if str(parent) != ".")
    clash = sorted(outputs & folders)
    if clash:
        raise DataError(f"{name}: {clash[0]!r} is both a file and a folder ({hint})")


def read_segments(fh: BinaryIO, name: str, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """(rows, words) per segment until `count` rows are read; a short or overlong file is one line."""
    seen = 0
    while seen < count:
        head = fh.read(_SEGMENT.size)
        if len(head) < _SEGMENT.size:
            raise DataError(f"{name}: truncated: {seen} of {count} images present")
        rows, n, crc = _SEGMENT.unpack(head)
        if 4 * n > _left(fh) or rows > MAX_SEGMENT_ROWS:
            raise DataError(f"{name}: truncated or damaged after {seen} of {count} images (a segment declares "
                            f"{rows} images in {4 * n:,} bytes; at most {MAX_SEGMENT_ROWS} images and the bytes left)")
        data = fh.read(4 * n)
        if len(data) < 4 * n or rows == 0 or seen + rows > count:
            raise DataError(f"{name}: truncated or damaged after {seen} of {count} images")
        if zlib.crc32(data) != crc:
            raise DataError(f"{name}: damaged: the codes of images {seen + 1}–{seen + rows} fail their checksum")
        seen += rows
        yield rows, np.frombuffer(data, "<u4").astype(np.uint32)
    if fh.read(1):
        raise DataError(f"{name}: unexpected bytes after the last image (damaged or concatenated file)")
