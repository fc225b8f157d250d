"""What exactly produced each number: versions, data hashes, seeds, cache entries.

:func:`run_provenance` backs the reproducibility appendix. Everything is read off
the running environment, the cache and the result files; nothing is typed in.
"""
from __future__ import annotations

import json
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from analysis import cache, results
from analysis.registry import ROOT


def pinned_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """Distribution names listed in ``pyproject.toml`` (dependencies and the test extra)."""
    import tomllib

    proj = tomllib.loads(pyproject.read_text())["project"]
    reqs = proj["dependencies"] + [r for group in proj.get("optional-dependencies", {}).values() for r in group]
    return [re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0] for r in reqs]


def package_rows() -> list[dict]:
    """One row per required distribution: installed version (or 'missing')."""
    out = [{"dataset": "python", "metric": "version", "value": platform.python_version()}]
    for name in pinned_requirements():
        try:
            v = metadata.version(name)
        except metadata.PackageNotFoundError:
            v = "missing"
        out.append({"dataset": name, "metric": "version", "value": v})
    return out


def cache_rows() -> list[dict]:
    """One row per cache entry: kind/key, entry hash, whether every file still matches its manifest
    (``verified``, :func:`analysis.cache.verify`), and the Debian source where recorded."""
    out, seen = [], set()
    for mf in sorted(cache.root().glob("*/*/" + cache.MANIFEST)):
        folder = mf.parent
        rec = json.loads(mf.read_text())
        files = rec["files"]
        row = {"dataset": f"{folder.parent.name}/{folder.name}", "metric": "entry_sha256",
               "value": cache.entry_hash(folder), "files": len(files),
               "megabytes": round(sum(f["size"] for f in files.values()) / 1e6, 2),
               "verified": cache.verify(folder)}
        out.append(row)
        src = folder / "source.json"
        if src.is_file():  # one Debian package (a debian.fetch entry) or several (an entry built from them)
            s = json.loads(src.read_text())
            pkgs = {s["package"]: s} if "package" in s else s.get("packages", {})
            for name, p in pkgs.items():
                if (name, p.get("deb_sha256")) not in seen and "deb_sha256" in p:
                    seen.add((name, p["deb_sha256"]))
                    out.append({"dataset": f"debian:{name}", "metric": "deb_sha256", "value": p["deb_sha256"],
                                "version": p.get("version", "")})
    return out


def seed_rows(folder: Path | None = None) -> list[dict]:
    """The seeds (and whether smoke-sized) in each result table under ``folder`` (default: where this run's
    tables end up, :func:`analysis.results.destination_dir`, plus any this run has written so far)."""
    folders = [folder] if folder else list(dict.fromkeys([results.destination_dir(), results.results_dir()]))
    tables = {f.stem: f for d in folders if d.is_dir() for f in sorted(d.glob("*.parquet"))}
    out = []
    for stem, f in sorted(tables.items()):
        df = pd.read_parquet(f)
        out.append({"dataset": stem, "metric": "seeds", "value": ", ".join(map(str, sorted(set(df["seed"]))))})
        if "smoke" in df:
            out.append({"dataset": stem, "metric": "smoke", "value": ", ".join(map(str, sorted(set(df["smoke"]))))})
    return out


def git_commit() -> str:
    """The commit of the working tree (with ``+dirty`` when it has changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha.stdout.strip()[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_provenance(*, smoke: bool = False, seed: int = 0) -> pd.DataFrame:
    """Tidy provenance rows in sections ``package``, ``cache``, ``seeds`` and ``code``."""
    sections = {"package": package_rows(), "cache": cache_rows(), "seeds": seed_rows(),
                "code": [{"dataset": "study", "metric": "git_commit", "value": git_commit()}]}
    recs = [{**r, "section": s, "value": str(r["value"])} for s, rs in sections.items() for r in rs]
    return results.rows(recs, run="provenance", model="", source="none", pretrained="", split="", seed=seed,
                        smoke=bool(smoke))


def versions_table() -> pd.DataFrame:
    """The versions a reader needs beside any figure: Python, key packages, the code commit."""
    names = ["torch", "open_clip_torch", "transformers", "numpy", "pandas", "scipy", "papermill", "jupyter-book"]
    rows = [{"package": "python", "version": platform.python_version()}]
    for n in names:
        try:
            rows.append({"package": n, "version": metadata.version(n)})
        except metadata.PackageNotFoundError:
            rows.append({"package": n, "version": "missing"})
    rows.append({"package": "study (git)", "version": git_commit()})
    return pd.DataFrame(rows).set_index("package").T
