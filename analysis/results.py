"""Tidy result rows with provenance, and atomic writes.

Every experiment returns a :class:`pandas.DataFrame` with at least the columns
:data:`COLUMNS` (``run, model, source, pretrained, dataset, split, seed, metric,
value``); extra columns are allowed. ``source`` says where a model came from:
``"published"`` (a released checkpoint such as ``clip:ViT-B-32/openai``),
``"embedded"`` (a stand-in trained here, e.g. ``clip-mini``) or ``"none"`` (rows
about data, not a model).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import pandas as pd

COLUMNS = ["run", "model", "source", "pretrained", "dataset", "split", "seed", "metric", "value"]
SOURCES = {"published", "embedded", "none"}


def rows(records: Iterable[dict], **common) -> pd.DataFrame:
    """Build a result frame from dict records, filling ``common`` provenance fields.

    Missing provenance columns raise ``ValueError`` naming them.
    """
    df = pd.DataFrame([{**common, **r} for r in records])
    return validate(df)


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Check the provenance contract; return the frame with :data:`COLUMNS` first."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"result rows lack provenance columns {missing}; every row needs {COLUMNS}")
    bad = set(df["source"].astype(str)) - SOURCES
    if bad:
        raise ValueError(f"unknown source values {sorted(bad)}; use one of {sorted(SOURCES)}")
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]].reset_index(drop=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    A crash mid-write leaves the old file (or none), never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write(df: pd.DataFrame, path: str | Path) -> dict[str, Path]:
    """Validate ``df`` and write it atomically as ``<path>.csv`` and ``<path>.parquet``."""
    import io

    df = validate(df)
    base = Path(path).with_suffix("")
    out = {"csv": atomic_write_bytes(base.with_suffix(".csv"), df.to_csv(index=False).encode())}
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    out["parquet"] = atomic_write_bytes(base.with_suffix(".parquet"), buf.getvalue())
    return out


def read(path: str | Path) -> pd.DataFrame:
    """Read a result file written by :func:`write` (parquet preferred, CSV otherwise)."""
    base = Path(path).with_suffix("")
    pq = base.with_suffix(".parquet")
    return validate(pd.read_parquet(pq) if pq.exists() else pd.read_csv(base.with_suffix(".csv")))


def results_dir() -> Path:
    """Where notebooks write their result tables: ``$STUDY_RESULTS`` or ``book/generated/results``."""
    here = Path(os.environ.get("STUDY_RESULTS") or Path(__file__).resolve().parent.parent / "book" / "generated" / "results")
    here.mkdir(parents=True, exist_ok=True)
    return here
