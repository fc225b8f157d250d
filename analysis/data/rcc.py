"""Reader for Qt binary resource bundles (``.rcc``), as shipped by GCompris.

Format (Qt ``rcc``, big-endian): a header ``b"qres"``, then version, tree offset,
data offset and names offset (uint32 each; version >= 3 adds a uint32 flags word).
The tree is an array of nodes of 14 bytes (version 1) or 22 bytes (version >= 2):
``name_offset:u32, flags:u16`` then, for a directory, ``child_count:u32,
first_child:u32``, else ``territory:u16, language:u16, data_offset:u32``;
version >= 2 appends a ``u64`` modification time. A name is ``len:u16, hash:u32``
then ``len`` UTF-16BE code units. A data blob is ``size:u32`` then the bytes; flag 1
marks zlib data carrying a 4-byte uncompressed-length prefix (``qCompress``), flag 4
zstd (not used by GCompris and refused here).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

COMPRESSED, DIRECTORY, COMPRESSED_ZSTD = 1, 2, 4


class RccError(ValueError):
    """The file is not a readable Qt resource bundle."""


def read_rcc(path: str | Path) -> dict[str, bytes]:
    """Return ``{resource path: file bytes}`` for every file in the bundle."""
    buf = Path(path).read_bytes()
    if buf[:4] != b"qres":
        raise RccError(f"{path}: not a Qt resource bundle (magic {buf[:4]!r}, expected b'qres')")
    version, tree, data, names = struct.unpack(">IIII", buf[4:20])
    node_size = 14 if version == 1 else 22

    def name_at(off: int) -> str:
        (n,) = struct.unpack(">H", buf[names + off : names + off + 2])
        start = names + off + 6
        return buf[start : start + 2 * n].decode("utf-16-be")

    def blob_at(off: int, flags: int) -> bytes:
        (size,) = struct.unpack(">I", buf[data + off : data + off + 4])
        raw = buf[data + off + 4 : data + off + 4 + size]
        if flags & COMPRESSED_ZSTD:
            raise RccError(f"{path}: zstd-compressed entries are not supported")
        return zlib.decompress(raw[4:]) if flags & COMPRESSED else raw

    out: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        base = tree + index * node_size
        name_off, flags = struct.unpack(">IH", buf[base : base + 6])
        name = "" if index == 0 else name_at(name_off)
        path_ = f"{prefix}/{name}" if name else prefix
        if flags & DIRECTORY:
            count, first = struct.unpack(">II", buf[base + 6 : base + 14])
            for child in range(first, first + count):
                walk(child, path_)
        else:
            (off,) = struct.unpack(">I", buf[base + 10 : base + 14])
            out[path_] = blob_at(off, flags)

    walk(0, "")
    return out
