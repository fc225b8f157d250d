"""A content-addressed cache for extracted data, embeddings and trained checkpoints.

An entry lives at ``<root>/<kind>/<key>/`` where ``key = sha256(canonical JSON of
the recipe)[:20]``: the recipe holds everything the content depends on (source
file hashes, parameters, seed, code version), so a change of any input is a new
entry, never a stale hit. Each entry holds a ``MANIFEST.json`` listing the sha256
and size of every file; reads verify it.

Writes are atomic: the builder fills a temporary sibling folder, the manifest is
written last, and the folder is renamed into place in one ``os.replace``. An
interrupted build leaves only a ``.tmp-*`` folder, which is never read.

A damaged entry (a file missing or not matching the manifest) is never deleted
before its replacement exists: the replacement is built beside it and swapped in
only once it verifies, with one line saying the entry was repaired. When it cannot
be rebuilt (no network, a source gone), the entry is kept, one line says so, and
:func:`damage` names its damaged files so that datasets skip and count them.

The root is ``$STUDY_CACHE`` or ``~/.cache/vlp-study``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
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


def source_hash(module) -> str:
    """sha256 of a module's source file (part of a cache key: changed code is a new entry)."""
    import inspect

    return file_sha256(inspect.getsourcefile(module))


def _manifest(folder: Path) -> dict:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {str(p.relative_to(folder)): {"sha256": file_sha256(p), "size": p.stat().st_size} for p in files}


def entry_hash(folder: Path) -> str:
    """One hash for a whole entry: sha256 of its manifest (stable across machines)."""
    text = (Path(folder) / MANIFEST).read_text()
    return hashlib.sha256(json.dumps(json.loads(text)["files"], sort_keys=True).encode()).hexdigest()


def damaged_files(folder: Path) -> dict[str, str] | None:
    """``{relative path: reason}`` for each file the manifest lists that is missing or differs from
    it in size or sha256 (``{}`` for a sound entry); ``None`` when the manifest is missing or unreadable."""
    mf = Path(folder) / MANIFEST
    if not mf.is_file():
        return None
    try:
        listed = json.loads(mf.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return None
    bad = {}
    for rel, meta in listed.items():
        p = Path(folder) / rel
        if not p.is_file():
            bad[rel] = "missing"
        elif p.stat().st_size != meta["size"]:
            bad[rel] = f"size {p.stat().st_size} bytes, manifest says {meta['size']}"
        elif file_sha256(p) != meta["sha256"]:
            bad[rel] = "sha256 differs from the manifest"
    return bad


def verify(folder: Path) -> bool:
    """True when ``folder`` has a manifest and every listed file matches its size and hash."""
    return damaged_files(folder) == {}


_KEPT: dict[Path, dict[str, str]] = {}  # damaged entries kept in this process: folder -> {relpath: reason}


def damage(path: str | Path) -> str | None:
    """Why ``path`` must not be used: it is a damaged file of an entry this process kept because it
    could not be rebuilt (the reason names the damage); ``None`` for every other path."""
    p = Path(path).absolute()
    for folder, files in _KEPT.items():
        if p.is_relative_to(folder):
            reason = files.get(p.relative_to(folder).as_posix())
            return f"damaged in the cache ({reason}) and could not be rebuilt" if reason else None
    return None


def _one_line(e: BaseException, width: int = 240) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _names(files: dict[str, str], n: int = 3) -> str:
    shown = ", ".join(sorted(files)[:n])
    return shown + (f" and {len(files) - n} more" if len(files) > n else "")


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
    against its manifest (``check=False`` skips the hashing, for hot paths). A
    damaged hit is rebuilt beside itself and swapped only once the rebuild verifies
    (one line reports the repair); if ``build`` fails, the damaged entry is kept, one
    line says which files are damaged and why it could not be rebuilt, and those
    files are reported by :func:`damage` (a damaged entry without a readable manifest
    is kept too, and the builder's error is raised).
    """
    base = root() / kind
    base.mkdir(parents=True, exist_ok=True)
    key = recipe_key(recipe)
    final, old = base / key, base / f".old-{key}"
    if not final.is_dir() and old.is_dir():  # a swap was killed between its two renames: put the entry back
        os.replace(old, final)
    bad: dict[str, str] | None = None
    if final.is_dir():
        if not check:
            return final
        bad = damaged_files(final)
        if bad == {}:
            _KEPT.pop(final.absolute(), None)
            return final
        if bad and _KEPT.get(final.absolute()) == bad:  # already reported as not rebuildable in this process
            return final
    prune_temporary(base)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
    try:
        try:
            build(tmp)
            manifest = {"recipe": recipe, "files": _manifest(tmp)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
            if not verify(tmp):
                raise CacheError(f"the rebuilt entry {tmp} failed verification right after it was written")
        except Exception as e:
            if not final.is_dir():
                raise
            what = (f"{len(bad)} damaged file(s) ({_names(bad)})" if bad else "its manifest is missing or unreadable")
            print(f"[cache] {kind}/{key}: {what}; could not rebuild it ({_one_line(e)}); "
                  + ("keeping the entry and skipping the damaged file(s)" if bad else "keeping the entry unused"),
                  file=sys.stderr)
            if not bad:
                raise
            _KEPT[final.absolute()] = bad
            return final
        if final.is_dir():  # swap the verified replacement in; the damaged entry goes only now
            try:
                os.replace(final, old)
            except OSError:  # another process is swapping: keep theirs if it verifies
                if not verify(final):
                    raise
            else:
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
                _KEPT.pop(final.absolute(), None)
                what = f"{len(bad)} damaged file(s) ({_names(bad)})" if bad else "a missing or unreadable manifest"
                print(f"[cache] repaired {kind}/{key}: rebuilt and verified it, replacing {what}", file=sys.stderr)
        else:
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
