"""Fetch a Debian package's files into the cache, without root.

``apt-get download NAME=VERSION`` then ``dpkg-deb -x`` into a temporary folder;
only the files ``keep(relpath)`` accepts are kept. The ``.deb``'s sha256 is
recorded in ``source.json`` inside the entry. Set ``$STUDY_DEBS`` to a folder that
holds the ``.deb`` files to work with no package mirror at all.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from analysis import cache
from analysis.data.base import DataUnavailable

PACKAGES = {  # exact versions: the embedded data is pinned like the Python stack
    "tuxpaint-stamps-default": "2022.06.04-1",
    "gcompris-qt-data": "3.1-2",
    "wordnet-base": "1:3.0-37",  # WordNet 3.0 dict files (analysis/wordnet.py)
    "wordnet-sense-index": "1:3.0-37",
}


def _apt_error(stderr: str) -> str:
    """apt's errors (its ``E:`` lines, URLs shortened to file names) or, without any, the end of ``stderr``."""
    errors = [" ".join(re.sub(r"https?://\S*/", "", line[2:]).split()) for line in stderr.splitlines()
              if line.startswith("E:")]
    return "; ".join(errors) or stderr.strip()[-300:]


def _download(name: str, version: str, into: Path) -> Path:
    local = os.environ.get("STUDY_DEBS")
    if local:
        # a version with an epoch ("1:3.0-37") is saved by apt as "1%3a3.0-37"
        found = sorted(Path(local).glob(f"{name}_{version}_*.deb")) + sorted(
            Path(local).glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))
        if found:
            return found[0]
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise DataUnavailable(
                f"'{tool}' is not installed, so Debian package {name}={version} cannot be fetched. "
                f"Install apt/dpkg, or download {name}_{version}_all.deb elsewhere and set STUDY_DEBS to its folder.")
    proc = subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=into, capture_output=True, text=True)
    found = sorted(into.glob(f"{name}_*.deb"))
    if proc.returncode != 0 or not found:
        raise DataUnavailable(
            f"could not download Debian package {name}={version}: {_apt_error(proc.stderr)}. "
            f"Run 'apt-get update' (as root) first, or put {name}_{version}_all.deb in a folder named by STUDY_DEBS.")
    return found[0]


def fetch(name: str, keep: Callable[[str], bool], *, tag: str = "files") -> Path:
    """Return the cache folder holding the kept files of Debian package ``name`` (pinned version)."""
    version = PACKAGES[name]

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            deb = _download(name, version, Path(tmp))
            unpacked = Path(tmp) / "x"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
            n = 0
            for p in unpacked.rglob("*"):
                rel = str(p.relative_to(unpacked))
                if p.is_file() and not p.is_symlink() and keep(rel):
                    dest = out / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(p, dest)
                    n += 1
            (out / "source.json").write_text(json.dumps(
                {"package": name, "version": version, "deb": deb.name,
                 "deb_sha256": cache.file_sha256(deb), "files_kept": n}, indent=1))

    return cache.entry("debian", {"package": name, "version": version, "tag": tag}, build)


def source_info(folder: Path) -> dict:
    """The ``source.json`` written by :func:`fetch` (package, version, .deb sha256)."""
    path = Path(folder) / "source.json"
    damaged = cache.damage(path)
    if damaged:
        raise DataUnavailable(f"{path} is {damaged}; reconnect to a Debian mirror (or set STUDY_DEBS) and run "
                              "'python -m analysis fetch' to rebuild it")
    return json.loads(path.read_text())
