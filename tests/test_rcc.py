"""The .rcc reader against bundles written here by an independent writer of the format."""
import struct
import zlib

import pytest

from analysis.data.rcc import RccError, read_rcc


def write_rcc(path, files: dict[str, bytes], *, compress: bool, version: int = 2):
    """A minimal Qt rcc writer: root dir -> one dir 'res' -> the files (flat)."""
    names, data = b"", b""
    name_off, data_off = {}, {}

    def add_name(n):
        nonlocal names
        name_off[n] = len(names)
        names += struct.pack(">HI", len(n), 0) + n.encode("utf-16-be")

    add_name("res")
    for n, blob in files.items():
        add_name(n)
        payload = struct.pack(">I", len(blob)) + zlib.compress(blob) if compress else blob
        data_off[n] = len(data)
        data += struct.pack(">I", len(payload)) + payload
    tail = b"\0" * 8 if version >= 2 else b""
    nodes = [struct.pack(">IHII", 0, 2, 1, 1) + tail,  # root: 1 child starting at node 1
             struct.pack(">IHII", name_off["res"], 2, len(files), 2) + tail]
    for n in files:
        nodes.append(struct.pack(">IHHHI", name_off[n], 1 if compress else 0, 0, 0, data_off[n]) + tail)
    tree = b"".join(nodes)
    header_len = 20
    tree_at, data_at = header_len, header_len + len(tree)
    names_at = data_at + len(data)
    path.write_bytes(b"qres" + struct.pack(">IIII", version, tree_at, data_at, names_at) + tree + data + names)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("version", [1, 2])
def test_roundtrip(tmp_path, compress, version):
    files = {"a.txt": b"hello", "photo.webp": bytes(range(256)) * 4}
    p = tmp_path / "x.rcc"
    write_rcc(p, files, compress=compress, version=version)
    assert read_rcc(p) == {f"/res/{k}": v for k, v in files.items()}


def test_bad_magic(tmp_path):
    p = tmp_path / "bad.rcc"
    p.write_bytes(b"nope" + b"\0" * 40)
    with pytest.raises(RccError, match="not a Qt resource bundle"):
        read_rcc(p)
