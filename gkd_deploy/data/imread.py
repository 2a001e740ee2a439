"""Decoding image and label files with OpenCV, with errors that name the file.

OpenCV expands palette ("P" mode) PNGs to colour, which loses the palette *indices* that GTAV and
Mapillary store their label ids in. `read_label_ids` gets them back exactly by rewriting the
palette to a grey ramp (index i -> colour (i, i, i)) before decoding, without touching pixel data.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from gkd_deploy.errors import DataError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE_COLOUR_TYPE = 3


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or exc
        raise DataError(f"cannot read {what} {path}: {reason}; check that the file exists and is readable") from exc


def _decode(data: bytes, flags: int, path: Path, what: str) -> np.ndarray:
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if data else None
    if array is None:
        raise DataError(
            f"cannot decode {what} {path}: the file is empty, truncated or not an image; "
            "re-extract or re-download it, or remove it from the data set"
        )
    return array


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB (grey images are repeated, alpha dropped)."""
    # IMREAD_COLOR also scales 16-bit files to 8 bits.
    bgr = _decode(_read_bytes(path, "image"), cv2.IMREAD_COLOR, path, "image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decode_label(path: Path) -> np.ndarray:
    """A label file decoded unchanged (16 bits stay 16 bits); a palette PNG gives its indices (H, W)."""
    data = _read_bytes(path, "label")
    palette_data = _grey_palette_png(data, path)
    if palette_data is not None:
        # Grey ramp palette: every channel of the decoded pixel is its palette index.
        return _decode(palette_data, cv2.IMREAD_COLOR, path, "label")[:, :, 0].copy()
    return _decode(data, cv2.IMREAD_UNCHANGED, path, "label")


def read_label_ids(path: Path) -> np.ndarray:
    """Decode a single-channel label map to (H, W) uint8 or uint16 ids.

    Palette PNGs give their palette indices. A 3-channel file whose channels are all equal (a
    grey map saved as RGB) is accepted; a real colour map is a `DataError`.
    """
    array = _decode_label(path)
    if array.ndim == 3:
        channels = array[:, :, :3]
        first = channels[:, :, 0]
        if not (np.array_equal(first, channels[:, :, 1]) and np.array_equal(first, channels[:, :, 2])):
            raise DataError(
                f"label {path} is a colour image; this data set expects single-channel label ids "
                "(one id per pixel), not a colour-coded visualisation"
            )
        array = channels[:, :, 0].copy()
    if array.dtype not in (np.uint8, np.uint16):
        raise DataError(f"label {path} has {array.dtype} pixels; expected 8- or 16-bit integer label ids")
    return array


def read_label_red_channel(path: Path) -> np.ndarray:
    """Decode a label map that keeps its ids in the red channel (SYNTHIA) to (H, W) uint8 or uint16 ids.

    The file is decoded unchanged, so 16-bit ids stay exact (no scaling to 8 bits). OpenCV gives
    channels in BGR(A) order: red is channel 2, which for a 3-channel file is the last one (as
    `cv2.imread(path, cv2.IMREAD_UNCHANGED)[:, :, -1]` reads it). A single-channel file is taken
    as the ids themselves; a palette PNG gives its palette indices.
    """
    array = _decode_label(path)
    if array.ndim == 3:
        if array.shape[2] < 3:
            raise DataError(
                f"label {path} has {array.shape[2]} channels; expected one channel of ids or a "
                "3-channel image with the ids in the red channel"
            )
        array = array[:, :, 2].copy()
    if array.dtype not in (np.uint8, np.uint16):
        raise DataError(f"label {path} has {array.dtype} pixels; expected 8- or 16-bit integer label ids")
    return array


def read_label_rgb(path: Path) -> np.ndarray:
    """Decode a colour-coded label map to (H, W, 3) uint8 RGB (alpha dropped)."""
    array = _decode(_read_bytes(path, "label"), cv2.IMREAD_UNCHANGED, path, "label")
    if array.ndim != 3 or array.shape[2] < 3 or array.dtype != np.uint8:
        raise DataError(
            f"label {path} is not an 8-bit colour image (shape {array.shape}, {array.dtype}); "
            "this data set expects RGB colour-coded labels"
        )
    return cv2.cvtColor(array[:, :, :3], cv2.COLOR_BGR2RGB)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """Split a PNG into (type, payload) chunks up to IEND, or None when it is truncated."""
    chunks, offset = [], len(_PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        payload = data[offset + 8 : offset + 8 + length]
        if len(payload) != length:
            return None
        chunks.append((kind, payload))
        offset += 12 + length
        if kind == b"IEND":
            return chunks
    return None


def _grey_palette_png(data: bytes, path: Path) -> bytes | None:
    """For a palette PNG, the same PNG with a grey-ramp palette; None for any other file."""
    # IHDR is always the first chunk: bytes 24 and 25 are its bit depth and colour type.
    if len(data) < 26 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    bit_depth, colour_type = data[24], data[25]
    if colour_type != _PNG_PALETTE_COLOUR_TYPE:
        return None
    chunks = _png_chunks(data)
    if chunks is None:
        raise DataError(f"cannot decode label {path}: the PNG is truncated; re-extract or re-download it")
    # 2**bit_depth entries: the largest palette this bit depth can index, so any stored index is valid.
    ramp = bytes(np.repeat(np.arange(2**bit_depth, dtype=np.uint8), 3))
    out = [_PNG_SIGNATURE]
    for kind, payload in chunks:
        if kind == b"tRNS":
            continue  # transparency would only add an alpha channel
        if kind == b"PLTE":
            payload = ramp
        crc = struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)) & 0xFFFFFFFF)
        out.append(struct.pack(">I", len(payload)) + kind + payload + crc)
    return b"".join(out)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image, read from the PNG or TIFF header when possible.

    Large aerial tiles are indexed into windows without decoding their pixels; other formats
    fall back to a full decode.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(32)
            size = _png_size(header) if header.startswith(_PNG_SIGNATURE) else _tiff_size(handle, header)
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    if size is None:
        height, width = read_rgb(path).shape[:2]
        return height, width
    return size


def _png_size(header: bytes) -> tuple[int, int] | None:
    if len(header) < 24 or header[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", header[16:24])
    return height, width


def _tiff_size(handle, header: bytes) -> tuple[int, int] | None:
    """Image size from the first IFD of a classic or BigTIFF file (tags 256 width, 257 length)."""
    if len(header) < 16 or header[:2] not in (b"II", b"MM"):
        return None
    endian = "<" if header[:2] == b"II" else ">"
    magic = struct.unpack(endian + "H", header[2:4])[0]
    if magic == 42:
        ifd_offset = struct.unpack(endian + "I", header[4:8])[0]
        count_format, entry_format, entry_size = "H", "HHI4s", 12
    elif magic == 43:
        ifd_offset = struct.unpack(endian + "Q", header[8:16])[0]
        count_format, entry_format, entry_size = "Q", "HHQ8s", 20
    else:
        return None
    handle.seek(ifd_offset)
    count_bytes = handle.read(struct.calcsize(count_format))
    if len(count_bytes) != struct.calcsize(count_format):
        return None
    (count,) = struct.unpack(endian + count_format, count_bytes)
    values: dict[int, int] = {}
    for _ in range(min(count, 4096)):
        entry = handle.read(entry_size)
        if len(entry) != entry_size:
            return None
        tag, field_type, _, value = struct.unpack(endian + entry_format, entry)
        if tag in (256, 257):
            # Type 3 is SHORT, 4 LONG, 16 LONG8; inline values sit at the start of the value field.
            value_format = {3: "H", 4: "I", 16: "Q"}.get(field_type)
            if value_format is None:
                return None
            values[tag] = struct.unpack(endian + value_format, value[: struct.calcsize(value_format)])[0]
    if 256 not in values or 257 not in values:
        return None
    return values[257], values[256]
