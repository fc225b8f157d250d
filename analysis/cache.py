"""A content-addressed cache for extracted data, embeddings and trained checkpoints.

An entry lives at ``<root>/<kind>/<key>/`` where ``key = sha256(canonical JSON of
the recipe)[:20]``: the recipe holds everything the content depends on (source
file hashes, parameters, seed, code version), so a change of any input is a new
entry, never a stale hit. Each entry holds a ``MANIFEST.json`` listing the sha256
and size of every file; reads verify it and a damaged entry is rebuilt.

Writes are atomic: the builder fills a temporary sibling folder, the manifest is
written last, and the folder is renamed into place in one ``os.replace``. An
interrupted build leaves only a ``.tmp-*`` folder, which is never read.

The root is ``$STUDY_CACHE`` or ``~/.cache/vlp-study``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

MANIFEST = "MANIFEST.json"


class CacheError(RuntimeError):
    """A cache entry failed verification and could not be rebuilt."""


def root() -> Path:
    """The cache root: ``$STUDY_CACHE`` if set, else ``~/.cache/vlp-study``."""
    path = Path(os.environ.get("STUDY_CACHE") or Path.home() / ".cache" / "vlp-study")
    path.mkdir(parents=True, exist_ok=True)
    return path


def recipe_key(recipe: dict) -> str:
    """``sha256(json.dumps(recipe, sort_keys=True))`` truncated to 20 hex digits."""
    blob = json.dumps(recipe, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(folder: Path) -> dict:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {str(p.relative_to(folder)): {"sha256": file_sha256(p), "size": p.stat().st_size} for p in files}


def entry_hash(folder: Path) -> str:
    """One hash for a whole entry: sha256 of its manifest (stable across machines)."""
    text = (Path(folder) / MANIFEST).read_text()
    return hashlib.sha256(json.dumps(json.loads(text)["files"], sort_keys=True).encode()).hexdigest()


def verify(folder: Path) -> bool:
    """True when ``folder`` has a manifest and every listed file matches its size and hash."""
    mf = folder / MANIFEST
    if not mf.is_file():
        return False
    try:
        listed = json.loads(mf.read_text())["files"]
    except (ValueError, KeyError):
        return False
    for rel, meta in listed.items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != meta["size"] or file_sha256(p) != meta["sha256"]:
            return False
    return True


def prune_temporary(base: Path, older_than_s: float = 6 * 3600) -> int:
    """Remove ``.tmp-*`` folders left by builds killed outright (older than ``older_than_s``)."""
    import time

    n = 0
    for tmp in base.glob(".tmp-*"):
        if time.time() - tmp.stat().st_mtime > older_than_s:
            shutil.rmtree(tmp, ignore_errors=True)
            n += 1
    return n


def entry(kind: str, recipe: dict, build: Callable[[Path], None], *, check: bool = True) -> Path:
    """Return the folder of the entry for ``recipe``, building it with ``build(tmpdir)`` if needed.

    ``build`` writes its files into the folder it is given. A hit is verified
    against its manifest (``check=False`` skips the hashing, for hot paths); a
    corrupt hit is removed and rebuilt.
    """
    base = root() / kind
    base.mkdir(parents=True, exist_ok=True)
    final = base / recipe_key(recipe)
    if final.is_dir():
        if not check or verify(final):
            return final
        shutil.rmtree(final, ignore_errors=True)
    prune_temporary(base)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
    try:
        build(tmp)
        manifest = {"recipe": recipe, "files": _manifest(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
        try:
            os.replace(tmp, final)
        except OSError:  # another process won the race: keep theirs if it verifies
            if not verify(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not verify(final):
        raise CacheError(f"cache entry {final} failed verification right after it was written")
    return final


def cached_array(kind: str, recipe: dict, compute: Callable[[], "object"]):
    """Cache one NumPy array (``compute()``) under ``recipe``; return the array."""
    import numpy as np

    folder = entry(kind, recipe, lambda d: np.save(d / "array.npy", np.asarray(compute())))
    return np.load(folder / "array.npy")


def cached_arrays(kind: str, recipe: dict, compute: Callable[[], dict]) -> dict:
    """Cache a dict of NumPy arrays (``compute()``, saved as one ``.npz``) under ``recipe``."""
    import numpy as np

    folder = entry(kind, recipe, lambda d: np.savez(d / "arrays.npz", **compute()))
    with np.load(folder / "arrays.npz") as z:
        return {k: z[k] for k in z.files}


def clear(kind: str | None = None) -> None:
    """Delete the whole cache or one kind of entry."""
    shutil.rmtree(root() / kind if kind else root(), ignore_errors=True)
