"""Every notebook's parameters, declared once: name, type, default, allowed values, help.

The command line checks ``-p KEY VALUE`` against these declarations before any kernel
starts, and ``tests/test_notebooks.py`` checks that each template's ``parameters`` cell
assigns exactly these names with these defaults. A notebook added from outside the
package (``Registry.register`` in a plugin) may :func:`declare` its parameters; without a
declaration its template's ``parameters`` cell is read and each literal's type is used.

>>> check("scorers", {"seed": "abc"})  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
ParameterError: notebook 'scorers': seed='abc' is not allowed: an integer >= 0 is expected ...
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

TYPES = ("bool", "int", "float", "str", "list", "any")


class ParameterError(ValueError):
    """A parameter key or value that a notebook does not accept; the message says what is allowed."""


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    ``type`` is one of :data:`TYPES` (``list`` is a list of strings); ``minimum``/``maximum``
    bound numbers; ``choices`` lists allowed values; ``optional`` allows ``None`` (whose
    meaning ``none_means`` states); ``names`` is ``"scorer"``, ``"dataset"`` or ``"metric"`` when every value
    must be a name in that registry.
    """

    name: str
    type: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    optional: bool = False
    names: str | None = None
    none_means: str = ""

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"parameter {self.name!r}: type {self.type!r} is not one of {TYPES}")

    def allowed(self) -> str:
        """What values are accepted, in words: ``"an integer >= 2, or None (all items)"``."""
        words = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
                 "list": f"a list of {self.names or 'string'} names" if self.names else "a list of strings",
                 "any": "any YAML value"}[self.type]
        if self.minimum is not None and self.maximum is not None:
            words += f" from {self.minimum} to {self.maximum}"
        elif self.minimum is not None:
            words += f" >= {self.minimum}"
        elif self.maximum is not None:
            words += f" <= {self.maximum}"
        if self.choices:
            words += f" (one of {', '.join(map(str, self.choices))})"
        if self.type == "list":
            words += " ([a, b], or one bare name)"
        if self.optional:
            words += ", or None" + (f" ({self.none_means})" if self.none_means else "")
        return words

    def type_text(self) -> str:
        """Short type for tables: ``int>=2|None``, ``list[scorer]``."""
        t = f"list[{self.names}]" if self.type == "list" and self.names else self.type
        if self.minimum is not None:
            t += f">={self.minimum}"
        if self.maximum is not None:
            t += f"<={self.maximum}"
        return t + ("|None" if self.optional else "")

    def check(self, value: Any, notebook: str = "?") -> Any:
        """Return ``value`` normalised (a bare string becomes ``[string]`` for lists) or raise
        :class:`ParameterError` naming the notebook, the parameter, the value and what is allowed."""

        def bad(why: str = "") -> ParameterError:
            return ParameterError(f"notebook {notebook!r}: {self.name}={value!r} is not allowed{why}: "
                                  f"{self.allowed()} is expected (default {self.default!r}; {self.help}).")

        if value is None or (self.optional and isinstance(value, str) and value.strip().lower() == "none"):
            if self.optional or self.type == "any":
                return None
            raise bad()
        if self.type == "any":
            return value
        if self.type == "bool":
            if not isinstance(value, bool):
                raise bad()
            return value
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad()
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad(" (not a whole number)")
                value = int(value)
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad()
            value = float(value)
        elif self.type == "str":
            if not isinstance(value, str):
                raise bad()
        elif self.type == "list":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
                raise bad()
            value = list(value)
            dupes = sorted({v for v in value if value.count(v) > 1})
            if dupes:
                raise ParameterError(f"notebook {notebook!r}: parameter {self.name}={value!r} names "
                                     f"{', '.join(dupes)} more than once; list each once")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise bad(" (out of range)")
        if self.choices and value not in self.choices:
            raise bad()
        if self.names:
            from analysis.registry import DATASETS, METRICS, SCORERS, UnknownNameError

            reg = {"scorer": SCORERS, "dataset": DATASETS, "metric": METRICS}[self.names]
            for v in value:
                try:
                    reg.entry(v)
                except UnknownNameError as e:
                    raise ParameterError(f"notebook {notebook!r}: parameter {self.name}: {e}") from None
            if self.names == "scorer":  # local weight paths resolved here, not in the kernel's folder
                from analysis.scorers import absolute_name

                value = [absolute_name(v) for v in value]
        return value


SMOKE = Param("smoke", "bool", False, "tiny sizes to check the page runs; smoke pages never reach the book")
SEED = Param("seed", "int", 0, "seed of every random choice (analysis.runtime.seed_all)", minimum=0)

DECLARED: dict[str, list[Param]] = {
    "data": [
        SMOKE, SEED,
        Param("datasets", "list", ["tuxpaint-stamps", "gcompris-explore", "gcompris-categories", "stamp-scenes",
                                   "stamp-scenes-unseen", "sample-photos"], "datasets to describe, one card each",
              names="dataset"),
        Param("examples", "int", 8, "example images per dataset card", minimum=1, maximum=64),
    ],
    "scorers": [
        SMOKE, SEED,
        Param("scorers", "list", None, "scorers to evaluate", names="scorer", optional=True,
              none_means="the registry's defaults and their +neg ablations (scorer_eval.default_scorer_names())"),
        Param("datasets", "list", ["tuxpaint-stamps", "stamp-scenes", "stamp-scenes-unseen", "gcompris-explore"],
              "datasets to evaluate on (held-out items as each dataset declares)", names="dataset"),
        Param("n_boot", "int", 1000, "bootstrap resamples for intervals", minimum=100),
        Param("max_items", "int", None, "at most this many evaluation items per dataset", minimum=2,
              optional=True, none_means="all items"),
    ],
    "measures": [
        SMOKE, SEED,
        Param("metrics", "list", None, "caption metrics to validate", names="metric", optional=True,
              none_means="analysis.measures.DEFAULT_METRICS: n-gram metrics, sg-f1, CLIP-S/RefCLIP-S over clip-mini "
                         "and the other stand-ins as score:<name>"),
        Param("datasets", "list", ["stamp-scenes", "stamp-scenes-unseen"],
              "scene datasets (known scene graphs) whose held-out scenes are pooled into the known cases",
              names="dataset"),
        Param("max_items", "int", None, "at most this many scenes per dataset", minimum=2, optional=True,
              none_means="every held-out scene with two object kinds"),
        Param("batch_size", "int", 32, "captions per language-model batch (fluency)", minimum=1),
    ],
    "reproducibility": [SMOKE, SEED],
}


def declare(notebook: str, params: list[Param], *, replace: bool = False) -> None:
    """Declare the parameters of ``notebook`` (for notebooks registered from a plugin)."""
    if notebook in DECLARED and not replace:
        raise ValueError(f"parameters of notebook {notebook!r} are already declared; pass replace=True")
    DECLARED[notebook] = list(params)


def template_values(notebook: str) -> dict[str, Any]:
    """The literals the template's ``parameters`` cell assigns, in order."""
    import nbformat

    from analysis.registry import notebook_template

    nb = nbformat.read(notebook_template(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"template of notebook {notebook!r} needs exactly one cell tagged 'parameters' "
                             f"(found {len(cells)})")
    out = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ParameterError(f"template of notebook {notebook!r}: the parameters cell may only assign "
                                 f"literals to names, not {ast.unparse(node)!r}")
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def _inferred(notebook: str) -> list[Param]:
    kinds = {bool: "bool", int: "int", float: "float", str: "str", list: "list"}
    return [Param(k, kinds.get(type(v), "any"), v, "read from the template's parameters cell")
            for k, v in template_values(notebook).items()]


def spec(notebook: str) -> dict[str, Param]:
    """``{name: Param}`` for ``notebook``: its declaration, else what its template assigns."""
    from analysis.registry import NOTEBOOKS

    NOTEBOOKS.entry(notebook)  # unknown notebook -> UnknownNameError with the valid names
    return {p.name: p for p in (DECLARED[notebook] if notebook in DECLARED else _inferred(notebook))}


def defaults(notebook: str) -> dict[str, Any]:
    """The declared default of every parameter of ``notebook``."""
    return {k: p.default for k, p in spec(notebook).items()}


def _unknown_key(key: str, known: list[str], where: str) -> ParameterError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ParameterError(f"{where} has no parameter {key!r}; its parameters are: {', '.join(known)}.{hint} "
                          f"(python -m analysis list NOTEBOOK shows them with types and defaults)")


def check(notebook: str, values: dict[str, Any]) -> dict[str, Any]:
    """Check ``values`` for ``notebook`` and return every parameter (defaults filled in, values normalised)."""
    sp = spec(notebook)
    for k in values:
        if k not in sp:
            raise _unknown_key(k, list(sp), f"notebook {notebook!r}")
    return {k: (p.check(values[k], notebook) if k in values else p.default) for k, p in sp.items()}


def check_many(notebooks: list[str], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Check ``values`` for several notebooks at once: each notebook takes the keys it declares; a key no
    notebook declares is refused. Returns ``{notebook: full parameters}``."""
    specs = {n: spec(n) for n in notebooks}
    known = list(dict.fromkeys(k for sp in specs.values() for k in sp))
    for k in values:
        if k not in known:
            raise _unknown_key(k, known, "notebook " + " / ".join(repr(n) for n in notebooks))
    return {n: check(n, {k: v for k, v in values.items() if k in sp}) for n, sp in specs.items()}


def is_default(notebook: str, params: dict[str, Any]) -> bool:
    """True when ``params`` (as returned by :func:`check`) equal the declared defaults."""
    return check(notebook, params) == defaults(notebook)


def changed(notebook: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters whose value differs from the default, in declaration order."""
    d = defaults(notebook)
    return {k: v for k, v in params.items() if d.get(k, object()) != v}


def variant_name(notebook: str, params: dict[str, Any]) -> str:
    """Folder name of a non-default parameter set: ``<notebook>-<changed keys and values>-<hash>``.

    The hash is ``sha256(json.dumps(changed, sort_keys=True))[:8]``, so the same parameters always give
    the same folder, e.g. ``data-smoke-seed3-5d1c0a2e``.
    """
    diff = changed(notebook, params)
    parts = []
    for k, v in diff.items():
        if v is True:
            parts.append(k)
        elif v is False:
            parts.append(f"no-{k}")
        else:
            parts.append(f"{k}=" + ("+".join(map(str, v)) if isinstance(v, list) else str(v)))
    slug = re.sub(r"[^A-Za-z0-9.+=_-]+", "_", "-".join(parts))[:48].strip("_-") or "default"
    digest = hashlib.sha256(json.dumps(diff, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{notebook}-{slug}-{digest}"


def describe(notebook: str) -> str:
    """A plain-text table of ``notebook``'s parameters: name, type, default, help."""
    sp = spec(notebook)
    w = max(len(k) for k in sp)
    tw = max(len(p.type_text()) for p in sp.values())
    lines = [f"parameters of notebook '{notebook}' (set with -p KEY VALUE; VALUE is YAML):"]
    for k, p in sp.items():
        extra = f"; None = {p.none_means}" if p.none_means else ""
        lines.append(f"  {k:<{w}}  {p.type_text():<{tw}}  default {p.default!r}\n  {'':<{w}}  {p.help}{extra}")
    return "\n".join(lines)
