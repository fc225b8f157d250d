"""Closed-form linear maps between the image and text sides of a dual encoder (ReCap), and the
modality-gap diagnostics they are judged by.

With ``X`` (n × d_x image embeddings) and ``Y`` (n × d_y embeddings of the paired captions), every
fitter returns a matrix ``W`` (d_x × d_y) and the map sends an image row ``x`` to ``x W`` on the text
side:

* ``procrustes``: ``W = argmin_{WᵀW = I} ‖XW − Y‖_F = U Vᵀ`` with ``U Σ Vᵀ = svd(XᵀY)``
  (ReCap; reference ``scipy.linalg.orthogonal_procrustes``);
* ``robust-procrustes``: iteratively reweighted Procrustes as in the authors' earlier SITTA code
  (``REFERENCE.md`` §2): start from ``procrustes``, then ``rounds`` times set per-row weights
  ``w_i ∝ 1 / (‖x_i W − y_i‖ + eps)`` and refit ``W = U Vᵀ`` from ``svd(Xᵀ diag(w) Y)``;
* ``lstsq``: ordinary least squares ``W = argmin ‖XW − Y‖_F``, solved from the normal equations
  ``XᵀX W = XᵀY`` by Cholesky (minimum-norm ``lstsq`` when ``XᵀX`` is singular);
* ``ridge``: ``W = (XᵀX + αI)⁻¹ XᵀY`` (no intercept; scikit-learn's ``Ridge(alpha, fit_intercept=False)``).

``standardize=True`` z-scores each dimension of ``X`` and ``Y`` with the mean and standard deviation of
the *fitting rows* (as SITTA does); the map stores them and re-uses them on every later batch.

Adding a method is one entry in :data:`FITTERS`. Everything here is a pure function over arrays;
:class:`AlignmentMap` is a frozen record with ``apply``/``inverse``/``save``/``load``.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

FORMAT = "alignment-map/1"
KS = (1, 5, 10)
FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


# ----------------------------------------------------------------------------- input checks
def _as_matrix(a, name: str, *, allow_vector: bool = False) -> np.ndarray:
    """``a`` as a 2-D float array (integers become float64); refuses other dtypes, other ranks, no rows,
    NaN and inf with a message that names ``name`` and the fix."""
    arr = np.asarray(a)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind == "f" and arr.dtype.itemsize < 4:  # float16: BLAS has no half-precision products
        arr = arr.astype(np.float32)
    elif arr.dtype.kind != "f":
        raise TypeError(f"{name} must be an array of real floats, got dtype {arr.dtype}; convert it with "
                        f"np.asarray({name}, dtype=np.float32)")
    if allow_vector and arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows = pairs, columns = embedding dimensions), got shape "
                         f"{arr.shape}; reshape one vector with {name}[None, :]")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one row and one dimension")
    with np.errstate(over="ignore", invalid="ignore"):
        total = arr.sum()
    if not np.isfinite(total):  # fast path; a sum that overflows is re-checked element-wise
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise ValueError(f"{name} has {int(bad.sum())} NaN/inf values in {rows.size} rows (first: row "
                             f"{int(rows[0])}); drop or impute them first, e.g. keep = "
                             f"np.isfinite({name}).all(1) applied to both sides")
    return arr


def _pair(x, y, names: tuple[str, str] = ("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    """Both sides checked, with the same number of rows, cast to one float dtype (float32 stays float32)."""
    a, b = names
    x, y = _as_matrix(x, a), _as_matrix(y, b)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{a} and {b} must have the same number of rows (row i of {a} is paired with row i of "
                         f"{b}), got {a} {x.shape} and {b} {y.shape}")
    dtype = np.result_type(x.dtype, y.dtype)
    return x.astype(dtype, copy=False), y.astype(dtype, copy=False)


def fingerprint(*arrays: np.ndarray, length: int = 16) -> str:
    """``sha256`` over each array's shape, dtype and bytes (C order), hex, truncated to ``length``.

    >>> fingerprint(np.zeros((2, 2), np.float32)) == fingerprint(np.zeros((2, 2), np.float32))
    True
    >>> fingerprint(np.zeros((2, 2))) == fingerprint(np.zeros((2, 2), np.float32))
    False
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}|{a.dtype.str}|".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:length]


# ----------------------------------------------------------------------------- fitters
def _gram(x: np.ndarray) -> np.ndarray:
    """``XᵀX`` as a float64 symmetric matrix (one BLAS call in the input's precision)."""
    return (x.T @ x).astype(np.float64)


def _svd_orthogonal(m: np.ndarray) -> np.ndarray:
    """``U Vᵀ`` of ``U Σ Vᵀ = svd(m)``: the orthogonal factor of ``m``'s polar decomposition.

    numpy's driver (LAPACK ``gesdd``) can fail to converge on a rank-deficient ``m`` (met here: robust
    Procrustes on z-scored transfer pairs with fewer rows than dimensions); then the slower, robust ``gesvd``
    (scipy) answers. With ``rank(m) < d`` the factor is not unique and either is a minimiser."""
    try:
        u, _, vt = np.linalg.svd(m, full_matrices=False)
    except np.linalg.LinAlgError:
        from scipy.linalg import svd

        u, _, vt = svd(m, full_matrices=False, lapack_driver="gesvd")
    return u @ vt


def procrustes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict]:
    """Orthogonal Procrustes: ``W = U Vᵀ`` with ``U Σ Vᵀ = svd(XᵀY)`` minimises ``‖XW − Y‖_F`` over
    ``WᵀW = I`` (``WWᵀ = I`` when ``d_x < d_y``).

    >>> x = np.eye(3); y = x[:, [1, 0, 2]]          # y is x with two columns swapped
    >>> W, _ = procrustes(x, y); np.allclose(x @ W, y)
    True
    """
    return _svd_orthogonal(x.T @ y), {"solver": "svd(XᵀY)"}


def robust_procrustes(x: np.ndarray, y: np.ndarray, *, rounds: int = 5, eps: float = 1e-3
                      ) -> tuple[np.ndarray, dict]:
    """Iteratively reweighted Procrustes (SITTA, ``REFERENCE.md`` §2): ``W₀`` = :func:`procrustes`, then
    for ``t = 1..rounds``: ``r_i = ‖x_i W_{t−1} − y_i‖``, ``w_i = (1 / (r_i + eps)) / max_j (1 / (r_j + eps))``
    and ``W_t = U Vᵀ`` from ``svd(Xᵀ diag(w) Y)`` (the weighted Procrustes problem
    ``min Σ_i w_i ‖x_i W − y_i‖²``). Rows far from the current fit (gross outliers) get small weights.
    """
    w_mat, _ = procrustes(x, y)
    for _ in range(rounds):
        r = x @ w_mat
        r -= y
        w = 1.0 / (np.sqrt(np.einsum("ij,ij->i", r, r)) + eps)
        w = (w / w.max()).astype(x.dtype)
        del r
        w_mat = _svd_orthogonal(x.T @ (y * w[:, None]))
    return w_mat, {"solver": f"svd(Xᵀ diag(w) Y), {rounds} reweighting rounds"}


def _min_norm_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(x, y, rcond=None)[0]


def _cholesky_solve(g: np.ndarray, b: np.ndarray, dtype) -> np.ndarray | None:
    """Solve ``g W = b`` for symmetric ``g = L Lᵀ`` by Cholesky in float64 (``W = L⁻ᵀ (L⁻¹ b)``); ``None``
    when ``g`` is not numerically positive definite (a pivot ratio ``(min L_jj / max L_jj)²`` below
    ``d · eps(dtype)``, ``dtype`` the precision ``g`` was accumulated in).

    numpy's LAPACK only: scipy ships a second OpenBLAS whose threads, still spinning after a call, starve
    numpy's next product on a 2-core machine (measured: a 5k × 64 Gram went from 0.2 ms to 300 ms).
    """
    try:
        low = np.linalg.cholesky(g)
    except np.linalg.LinAlgError:
        return None
    diag = np.abs(np.diag(low))
    if diag.min() == 0 or (diag.min() / diag.max()) ** 2 < g.shape[0] * np.finfo(dtype).eps:
        return None
    return np.linalg.solve(low.T, np.linalg.solve(low, b))


def lstsq(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, dict]:
    """Ordinary least squares without intercept: ``W = argmin ‖XW − Y‖_F = (XᵀX)⁻¹ XᵀY``, solved from the
    normal equations ``XᵀX W = XᵀY`` by Cholesky (two products in the input precision, the d × d solve in
    float64). When ``XᵀX`` is singular or numerically so (fewer rows than dimensions, collinear columns),
    the minimum-norm solution of ``numpy.linalg.lstsq`` (SVD, ``gelsd``) is returned instead and the
    info says so (``rank_deficient``).

    >>> x = np.array([[1., 0.], [0., 2.], [1., 1.]]); y = x @ np.array([[2., 0.], [1., 3.]])
    >>> W, info = lstsq(x, y); bool(np.allclose(W, [[2, 0], [1, 3]])), info["solver"]
    (True, 'cholesky(XᵀX)')
    """
    n, d = x.shape
    if n >= d:
        w = _cholesky_solve(_gram(x), (x.T @ y).astype(np.float64), x.dtype)
        if w is not None:
            return w.astype(x.dtype), {"solver": "cholesky(XᵀX)", "rank_deficient": False}
    return _min_norm_lstsq(x, y), {"solver": "numpy.linalg.lstsq (minimum norm; XᵀX singular)",
                                   "rank_deficient": True}


def ridge(x: np.ndarray, y: np.ndarray, *, alpha: float = 1.0) -> tuple[np.ndarray, dict]:
    """Ridge regression without intercept: ``W = (XᵀX + αI)⁻¹ XᵀY`` (Cholesky; ``α`` is not scaled by
    ``n``, as in scikit-learn's ``Ridge(alpha, fit_intercept=False)``).

    >>> W, _ = ridge(np.array([[1.], [1.]]), np.array([[2.], [2.]]), alpha=2.0); W.tolist()  # 4 / (2 + 2)
    [[1.0]]
    """
    if not alpha > 0:
        raise ValueError(f"ridge needs alpha > 0, got {alpha!r}; use method='lstsq' for alpha = 0")
    g = _gram(x)
    g[np.diag_indices_from(g)] += alpha
    b = (x.T @ y).astype(np.float64)
    w = _cholesky_solve(g, b, np.float64)
    if w is None:  # only for an enormous dynamic range; the general solver still answers
        w = np.linalg.solve(g, b)
    return w.astype(x.dtype), {"solver": "cholesky(XᵀX + αI)"}


@dataclass(frozen=True)
class Fitter:
    """One entry of :data:`FITTERS`: the function ``fn(x, y, **params) -> (W, info)``, the keyword
    parameters of :func:`fit_alignment` it takes, and whether its ``W`` has orthonormal rows/columns
    (then ``inverse`` is ``Wᵀ``)."""

    fn: Callable[..., tuple[np.ndarray, dict]]
    params: tuple[str, ...] = ()
    orthogonal: bool = False


FITTERS: dict[str, Fitter] = {
    "procrustes": Fitter(procrustes, (), True),
    "robust-procrustes": Fitter(robust_procrustes, ("rounds", "eps"), True),
    "lstsq": Fitter(lstsq, (), False),
    "ridge": Fitter(ridge, ("alpha",), False),
}


def _fitter(method: str) -> Fitter:
    if method not in FITTERS:
        raise ValueError(f"unknown alignment method {method!r}; valid: {', '.join(FITTERS)}")
    return FITTERS[method]


# ----------------------------------------------------------------------------- the map
def _zstats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-dimension mean and standard deviation (population, ``ddof=0``) of ``a``'s rows, in ``a``'s
    dtype; a dimension whose std is 0 or below ``eps(dtype) · (|mean| + 1)`` (constant up to rounding)
    gets std 1, so it maps to 0 instead of ±inf. Returns ``(mean, std, number of such dimensions)``."""
    mean = a.mean(axis=0, dtype=np.float64)
    std = a.std(axis=0, dtype=np.float64)
    flat = std <= np.finfo(a.dtype).eps * (np.abs(mean) + 1.0)
    std[flat] = 1.0
    return mean.astype(a.dtype), std.astype(a.dtype), int(flat.sum())


def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a = np.array(a, copy=True)
        a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class AlignmentMap:
    """A fitted map ``x ↦ x W`` from the image side to the text side.

    With ``standardize`` the map acts on z-scores: ``apply(x) = ((x − μ_x) / σ_x) W σ_y + μ_y`` with the
    means and standard deviations of the fitting rows (``x_mean`` … ``y_std``), so it returns text-side
    vectors in the text encoder's own units; ``apply(x, standardized=True)`` stops at ``((x − μ_x) / σ_x) W``.

    ``inverse(y)`` maps text to image: ``Wᵀ`` for the orthogonal methods (``procrustes``,
    ``robust-procrustes``: exact, ``inverse(apply(x)) = x``, when ``W`` is square), the Moore-Penrose
    pseudo-inverse ``W⁺`` for ``lstsq`` and ``ridge`` (the least-squares pre-image; exact only when ``W`` is
    square and invertible).

    ``fit_seconds`` is ``time.perf_counter`` around the z-scoring and the fitter (input checks and the
    data fingerprint are not counted). ``provenance`` holds the method, its parameters, ``n``, the
    dimensions, ``standardize``, the solver used, the dtype, the ``fingerprint`` of the fitting arrays and
    the caller's ``source``.
    """

    W: np.ndarray
    method: str
    standardize: bool = False
    x_mean: np.ndarray | None = None
    x_std: np.ndarray | None = None
    y_mean: np.ndarray | None = None
    y_std: np.ndarray | None = None
    fit_seconds: float = float("nan")
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("W", "x_mean", "x_std", "y_mean", "y_std"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if self.standardize and any(getattr(self, n) is None for n in ("x_mean", "x_std", "y_mean", "y_std")):
            raise ValueError("a standardized AlignmentMap needs x_mean, x_std, y_mean and y_std")

    @property
    def orthogonal(self) -> bool:
        return FITTERS[self.method].orthogonal if self.method in FITTERS else False

    @property
    def dims(self) -> tuple[int, int]:
        """``(d_x, d_y)``: the image-side and text-side dimensions."""
        return self.W.shape

    def _input(self, a, name: str, d: int) -> tuple[np.ndarray, bool]:
        vector = np.ndim(a) == 1
        arr = _as_matrix(a, name, allow_vector=True)
        if arr.shape[1] != d:
            raise ValueError(f"{name} has {arr.shape[1]} dimensions but this {self.method} map expects {d} "
                             f"(it was fitted on {self.dims[0]}-d image and {self.dims[1]}-d text rows)")
        return arr.astype(np.result_type(arr.dtype, self.W.dtype), copy=False), vector

    def apply(self, x, *, standardized: bool = False) -> np.ndarray:
        """Image side → text side: ``x W`` (see the class docstring for the z-scored form)."""
        x, vector = self._input(x, "x", self.dims[0])
        if self.standardize:
            x = (x - self.x_mean) / self.x_std
        out = x @ self.W
        if self.standardize and not standardized:
            out = out * self.y_std + self.y_mean
        return out[0] if vector else out

    def inverse(self, y, *, standardized: bool = False) -> np.ndarray:
        """Text side → image side: ``y Wᵀ`` (orthogonal maps) or ``y W⁺`` (``lstsq``, ``ridge``);
        ``standardized=True`` takes ``y`` as text-side z-scores (what ``apply(x, standardized=True)`` returns).
        The result is in the image encoder's units."""
        y, vector = self._input(y, "y", self.dims[1])
        if self.standardize and not standardized:
            y = (y - self.y_mean) / self.y_std
        back = self.W.T if self.orthogonal else np.linalg.pinv(self.W)
        out = y @ back
        if self.standardize:
            out = out * self.x_std + self.x_mean
        return out[0] if vector else out

    def to_dict(self) -> dict:
        """Plain fields: the arrays (``None`` when not standardized), ``method``, ``standardize``,
        ``fit_seconds`` and ``provenance``."""
        return {"format": FORMAT, "W": self.W, "method": self.method, "standardize": self.standardize,
                "x_mean": self.x_mean, "x_std": self.x_std, "y_mean": self.y_mean, "y_std": self.y_std,
                "fit_seconds": self.fit_seconds, "provenance": dict(self.provenance)}

    def save(self, path: str | Path) -> Path:
        """Write a ``.npz`` (arrays plus one JSON string; no pickle) atomically; returns the path.
        ``.npz`` is appended when ``path`` has no suffix."""
        from analysis.results import atomic_write_bytes

        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(".npz")
        d = self.to_dict()
        arrays = {k: d.pop(k) for k in ("W", "x_mean", "x_std", "y_mean", "y_std")}
        arrays = {k: v for k, v in arrays.items() if v is not None}
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(d)), **arrays)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "AlignmentMap":
        """Read a map written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(Path(path), allow_pickle=False) as z:
            if "meta" not in z or "W" not in z:
                raise ValueError(f"{path} is not an alignment map (no 'meta'/'W' entries); write one with "
                                 f"AlignmentMap.save")
            meta = json.loads(str(z["meta"]))
            if meta.pop("format", None) != FORMAT:
                raise ValueError(f"{path} is not a {FORMAT} file")
            arrays = {k: z[k] for k in ("W", "x_mean", "x_std", "y_mean", "y_std") if k in z}
        return cls(**arrays, **meta)


def fit_alignment(x, y, *, method: str = "procrustes", standardize: bool = False, alpha: float = 1.0,
                  rounds: int = 5, eps: float = 1e-3, source=None) -> AlignmentMap:
    """Fit ``W`` with ``x W ≈ y`` (row ``i`` of ``x`` paired with row ``i`` of ``y``) by ``method``, one of
    :data:`FITTERS`:

    * ``procrustes``: ``W = U Vᵀ``, ``U Σ Vᵀ = svd(XᵀY)`` (``min ‖XW − Y‖_F`` s.t. ``WᵀW = I``);
    * ``robust-procrustes``: ``rounds`` reweighting rounds with ``w_i ∝ 1 / (‖x_i W − y_i‖ + eps)``,
      each ``W = U Vᵀ`` from ``svd(Xᵀ diag(w) Y)``;
    * ``lstsq``: ``XᵀX W = XᵀY`` by Cholesky, minimum-norm ``lstsq`` when ``XᵀX`` is singular;
    * ``ridge``: ``W = (XᵀX + αI)⁻¹ XᵀY``, no intercept.

    ``standardize``: z-score each dimension of ``x`` and ``y`` with the mean/std of these rows first
    (stored in the map; a constant dimension gets std 1). ``source``: anything JSON-serialisable that says
    where the rows came from (kept in ``provenance``). Inputs must be 2-D real arrays without NaN/inf and
    with equal row counts; float32 is kept float32 (the small d × d solves run in float64).

    >>> rng = np.random.default_rng(0); x = rng.standard_normal((50, 3))
    >>> R = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    >>> m = fit_alignment(x, x @ R, source="doctest"); bool(np.allclose(m.W, R)), m.provenance["n"]
    (True, 50)
    """
    fitter = _fitter(method)
    x, y = _pair(x, y)
    params = {"alpha": alpha, "rounds": rounds, "eps": eps}
    params = {k: params[k] for k in fitter.params}
    if "rounds" in params and (int(rounds) != rounds or rounds < 0):
        raise ValueError(f"rounds must be an integer >= 0, got {rounds!r}")
    if "eps" in params and not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    try:
        json.dumps(source)
    except TypeError as e:
        raise TypeError(f"source must be JSON-serialisable (str, number, list, dict), got {type(source).__name__}; "
                        f"pass e.g. source={{'dataset': ..., 'split': ...}}") from e
    t = time.perf_counter()
    stats = {}
    xf, yf = x, y
    if standardize:
        mx, sx, fx = _zstats(x)
        my, sy, fy = _zstats(y)
        xf, yf = (x - mx) / sx, (y - my) / sy
        stats = {"x_mean": mx, "x_std": sx, "y_mean": my, "y_std": sy}
    w, info = fitter.fn(xf, yf, **params)
    fit_seconds = time.perf_counter() - t
    prov = {"method": method, **params, "n": int(x.shape[0]), "dim_x": int(x.shape[1]),
            "dim_y": int(y.shape[1]), "standardize": bool(standardize), "dtype": str(x.dtype), **info,
            "fingerprint": fingerprint(x, y)}
    if standardize:
        prov["constant_dims"] = {"x": fx, "y": fy}
    if source is not None:
        prov["source"] = source
    return AlignmentMap(W=w.astype(x.dtype, copy=False), method=method, standardize=bool(standardize),
                        fit_seconds=fit_seconds, provenance=prov, **stats)


def bare_svd_seconds(x, y, *, repeats: int = 1) -> float:
    """Seconds (best of ``repeats``) of the bare ``XᵀY`` product plus ``numpy.linalg.svd`` of it: the floor
    any Procrustes fit pays, the reference of ``python -m analysis bench alignment``. No checks, no copies."""
    x, y = np.asarray(x), np.asarray(y)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.linalg.svd(x.T @ y, full_matrices=False)
        best = min(best, time.perf_counter() - t)
    return best


# ----------------------------------------------------------------------------- diagnostics
def l2_normalise(a: np.ndarray) -> np.ndarray:
    """Rows divided by their Euclidean norm (a zero row stays zero).

    >>> l2_normalise(np.array([[3., 4.], [0., 0.]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    a = np.asarray(a, dtype=np.result_type(np.asarray(a).dtype, np.float32))
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(n > 0, n, 1.0)


def _derangement(n: int, seed: int) -> np.ndarray:
    """A random permutation without fixed points (one cycle through a seeded random order), ``n >= 2``."""
    from analysis.runtime import rng

    order = rng(seed).permutation(n)
    partner = np.empty(n, dtype=int)
    partner[order] = np.roll(order, -1)
    return partner


def pair_cosines(img, txt, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of the true pairs ``cos(img_i, txt_i)`` and of random pairs ``cos(img_i, txt_π(i))``, ``π`` a
    seeded random permutation without fixed points (so no random pair is a true one); both length ``n``.

    >>> t, r = pair_cosines(np.eye(3), np.eye(3), seed=0); t.tolist(), r.tolist()
    ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    """
    img, txt = _pair(img, txt, ("img", "txt"))
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"img and txt must share one embedding space (same dimension), got {img.shape[1]} and "
                         f"{txt.shape[1]}; map one side first (fit_alignment(...).apply)")
    if img.shape[0] < 2:
        raise ValueError("pair_cosines needs at least 2 pairs to form random pairs")
    a, b = l2_normalise(img), l2_normalise(txt)
    perm = _derangement(len(a), seed)
    return np.einsum("ij,ij->i", a, b), np.einsum("ij,ij->i", a, b[perm])


def modality_gap(img, txt, *, seed: int = 0) -> dict:
    """The modality gap of paired embeddings, on L2-normalised rows ``â_i``, ``t̂_i``:

    * ``centroid_distance = ‖mean_i â_i − mean_i t̂_i‖`` (Liang et al.'s gap; 0 when the two clouds share
      a centre);
    * ``true_pair_cosine = mean_i cos(img_i, txt_i)`` and ``random_pair_cosine = mean_i cos(img_i, txt_π(i))``
      (:func:`pair_cosines`, seeded derangement ``π``), and their difference ``cosine_margin``.

    >>> g = modality_gap(np.eye(2), np.eye(2)[::-1]); round(g["centroid_distance"], 6), g["true_pair_cosine"]
    (0.0, 0.0)
    """
    img, txt = _pair(img, txt, ("img", "txt"))
    true, rand = pair_cosines(img, txt, seed=seed)
    gap = l2_normalise(img).mean(axis=0, dtype=np.float64) - l2_normalise(txt).mean(axis=0, dtype=np.float64)
    return {"centroid_distance": float(np.linalg.norm(gap)), "true_pair_cosine": float(true.mean()),
            "random_pair_cosine": float(rand.mean()), "cosine_margin": float(true.mean() - rand.mean()),
            "n": int(len(true)), "seed": int(seed)}


def chance_recall(n: int, k: int) -> float:
    """R@k of a random ranking with one true item among ``n``: ``min(k, n) / n``.

    >>> chance_recall(100, 5)
    0.05
    """
    if n < 1 or k < 1:
        raise ValueError(f"chance_recall needs n >= 1 and k >= 1, got n={n}, k={k}")
    return min(k, n) / n


def recall_from_similarity(S, ks=KS, positives=None) -> dict:
    """``{"i2t_R@k": ..., "t2i_R@k": ...}`` from a similarity matrix ``S[i, j]`` (image ``i``, caption ``j``;
    default one true caption per image, the diagonal), by :func:`analysis.stats.recall_at_k` (ties broken
    at random in expectation) on ``S`` and on ``Sᵀ``.

    >>> recall_from_similarity(np.eye(3), ks=(1,))
    {'i2t_R@1': 1.0, 't2i_R@1': 1.0}
    """
    from analysis import stats

    S = np.asarray(S, dtype=float)
    P = None if positives is None else np.asarray(positives, bool)
    out = {}
    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"ks must be positive integers, got {k!r}")
        out[f"i2t_R@{k}"] = stats.recall_at_k(S, int(k), P)
        out[f"t2i_R@{k}"] = stats.recall_at_k(S.T, int(k), None if P is None else P.T)
    return out


def retrieval_recall(img, txt, ks=KS, positives=None) -> dict:
    """Image→text and text→image R@k with one caption per image (row ``i`` of ``txt`` is the caption of
    row ``i`` of ``img``), on cosine similarity ``S = â t̂ᵀ`` of L2-normalised rows
    (:func:`recall_from_similarity`). ``positives[i, j]``: caption ``j`` is also true of image ``i`` (default:
    only the diagonal), for galleries in which one caption text belongs to several images."""
    img, txt = _pair(img, txt, ("img", "txt"))
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"img and txt must share one embedding space (same dimension), got {img.shape[1]} and "
                         f"{txt.shape[1]}; map one side first (fit_alignment(...).apply)")
    if positives is not None and np.shape(positives) != (img.shape[0], txt.shape[0]):
        raise ValueError(f"positives must be a {img.shape[0]} × {txt.shape[0]} mask (image i, caption j), got shape "
                         f"{np.shape(positives)}")
    return recall_from_similarity(l2_normalise(img) @ l2_normalise(txt).T, ks, positives)


# ----------------------------------------------------------------------------- data-fraction sweep
def fraction_sweep(x, y, x_test, y_test, *, fractions=FRACTIONS, seeds=(0, 1, 2), method: str = "procrustes",
                   standardize: bool = False, ks=KS, positives=None, progress: bool = False, **fit_kw):
    """Fit on a seeded random subset of ``round(f · n)`` fitting rows (at least 1; drawn without
    replacement by :func:`analysis.runtime.rng` ``(seed)``) for every fraction ``f`` and seed, and score
    retrieval on the fixed test pairs (:func:`retrieval_recall` of ``map.apply(x_test)`` against
    ``y_test``; ``positives[i, j]`` marks test caption ``j`` as true of test image ``i`` too, default the
    diagonal only). Returns a tidy ``pandas.DataFrame``: one row per (fraction, seed, metric) with columns
    ``fraction, seed, n_fit, method, standardize, metric, value, fit_seconds, solver, rank_deficient``.

    Fewer rows than dimensions is fine for the orthogonal maps (the SVD still gives the closest orthogonal
    ``W``); for ``lstsq`` ``XᵀX`` is then singular and the minimum-norm solution is used
    (``rank_deficient`` is True). ``fit_seconds`` is the one column that differs between identical runs.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from analysis.runtime import rng

    x, y = _pair(x, y)
    x_test, y_test = _pair(x_test, y_test, ("x_test", "y_test"))
    n = x.shape[0]
    if positives is not None:
        positives = np.asarray(positives, bool)
        if positives.shape != (len(x_test), len(y_test)):
            raise ValueError(f"positives must be a {len(x_test)} × {len(y_test)} mask (test image i, test caption j), "
                             f"got shape {positives.shape}")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"fractions must lie in (0, 1], got {bad}")
    rows = []
    grid = [(f, s) for f in fractions for s in seeds]
    for f, s in tqdm(grid, desc=f"fraction sweep ({method})", disable=not progress):
        m = min(n, max(1, int(round(f * n))))
        idx = np.sort(rng(s).choice(n, size=m, replace=False))
        amap = fit_alignment(x[idx], y[idx], method=method, standardize=standardize, **fit_kw)
        scores = retrieval_recall(amap.apply(x_test), y_test, ks, positives)
        for metric, value in scores.items():
            rows.append({"fraction": float(f), "seed": int(s), "n_fit": m, "method": method,
                         "standardize": bool(standardize), "metric": metric, "value": value,
                         "fit_seconds": amap.fit_seconds, "solver": amap.provenance.get("solver", ""),
                         "rank_deficient": bool(amap.provenance.get("rank_deficient", False))})
    return pd.DataFrame(rows)
