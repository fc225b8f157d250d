"""Tidy result rows with provenance, and atomic writes.

Every experiment returns a :class:`pandas.DataFrame` with at least the columns
:data:`COLUMNS` (``run, model, source, pretrained, dataset, split, seed, smoke,
metric, value``); extra columns are allowed. ``source`` says where a model came
from: ``"published"`` (a released checkpoint such as ``clip:ViT-B-32/openai``),
``"local"`` (weights given by a file or folder path), ``"embedded"`` (a stand-in
trained here, e.g. ``clip-mini``) or ``"none"`` (rows about data, not a model).
``smoke`` is True for rows of a smoke-sized run.

Result tables hold only what the seed determines, so two runs with the same
parameters write byte-identical files; wall times go to a separate
``<name>.timings.csv`` (:func:`write_timings`), outside this contract.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

COLUMNS = ["run", "model", "source", "pretrained", "dataset", "split", "seed", "smoke", "metric", "value"]
SOURCES = {"published", "local", "embedded", "none"}
TIMINGS_SUFFIX = ".timings.csv"


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
    odd = sorted({repr(v) for v in df["smoke"].tolist() if not isinstance(v, (bool, np.bool_))})
    if odd:
        raise ValueError(f"column 'smoke' must hold True or False (was the run smoke-sized?), not {odd}")
    df = df.assign(smoke=df["smoke"].astype(bool))
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]].reset_index(drop=True)


def _mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` gives a new file (``mkstemp`` gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    A crash mid-write leaves the old file (or none), never a truncated one. The file gets the
    usual permissions (``0666`` less the umask, so others can read it), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _mode())
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


def write_timings(records: Iterable[dict] | pd.DataFrame, path: str | Path) -> Path:
    """Write wall times to ``<path>.timings.csv`` (atomically), beside the result table ``<path>``.

    Timings differ between identical runs, so they never go in result rows; this file is outside
    the provenance contract (any columns, e.g. ``run, model, what, seconds``).
    """
    df = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".csv", ".parquet") else base
    return atomic_write_bytes(base.parent / (base.name + TIMINGS_SUFFIX), df.to_csv(index=False).encode())


def read(path: str | Path) -> pd.DataFrame:
    """Read a result file written by :func:`write` (parquet preferred, CSV otherwise)."""
    base = Path(path).with_suffix("")
    pq = base.with_suffix(".parquet")
    return validate(pd.read_parquet(pq) if pq.exists() else pd.read_csv(base.with_suffix(".csv")))


def results_dir() -> Path:
    """Where notebooks write their result tables: ``$STUDY_RESULTS``, set by the runner, or else (a notebook
    opened by hand) the scratch folder ``book/generated/runs/manual/results``, never the book's own tables.

    During ``python -m analysis run`` this is the run's staging folder; its files move to
    :func:`destination_dir` only when the whole notebook succeeded.
    """
    scratch = Path(__file__).resolve().parent.parent / "book" / "generated" / "runs" / "manual" / "results"
    here = Path(os.environ.get("STUDY_RESULTS") or scratch)
    here.mkdir(parents=True, exist_ok=True)
    return here


def destination_dir() -> Path:
    """Where this run's result tables end up: ``$STUDY_RESULTS_DEST`` (set by the runner), else
    :func:`results_dir`. Read earlier chapters' tables from here (e.g. the Reproducibility page)."""
    dest = os.environ.get("STUDY_RESULTS_DEST")
    return Path(dest) if dest else results_dir()
