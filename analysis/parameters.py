"""Every notebook's parameters, declared once: name, type, default, allowed values, help.

The command line checks ``-p KEY VALUE`` against these declarations before any kernel
starts, and ``tests/test_notebooks.py`` checks that each template's ``parameters`` cell
assigns exactly these names with these defaults. A notebook added from outside the
package (``Registry.register`` in a plugin) may :func:`declare` its parameters; without a
declaration its template's ``parameters`` cell is read and each literal's type is used.

Parameter variants are pages (DESIGN.md §7): several ``NOTEBOOKS`` entries may share one
template, each fixing some of its parameters (``meta["parameters"]``, made by
:func:`analysis.registry.notebook_variants`). Parameters are declared per *template*, under the
key :func:`declaration_key` finds (the page's own name, else its ``variant_of`` base, else the
template path), so a variant needs no ``declare`` of its own. Everything else works per *page*:
:func:`spec` and :func:`defaults` are the template's with the page's fixed values as defaults,
so :func:`check`, :func:`is_default`, :func:`changed`, :func:`variant_name` and :func:`describe`
treat the fixed values as that page's defaults (its book page), and overriding any of them
makes a run under ``book/generated/runs/``.

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
    must be a name in that registry, or ``"reward"`` when it must be a probe reward name
    (:func:`reward_problem`); it applies to a ``str`` value and to each item of a ``list``.
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
        if self.names is not None and self.names not in NAME_KINDS:
            raise ValueError(f"parameter {self.name!r}: names={self.names!r} is not one of {NAME_KINDS}")
        if self.names is not None and self.type not in ("str", "list"):
            raise ValueError(f"parameter {self.name!r}: names= applies to str and list parameters, not {self.type}")

    def allowed(self) -> str:
        """What values are accepted, in words: ``"an integer >= 2, or None (all items)"``."""
        words = {"bool": "true or false", "int": "an integer", "float": "a number",
                 "str": f"a {self.names} name" if self.names else "a string",
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
        t = (f"list[{self.names}]" if self.type == "list" else self.names) if self.names else self.type
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
            items = [value] if isinstance(value, str) else value
            for v in items:
                why = name_problem(self.names, v)
                if why:
                    raise ParameterError(f"notebook {notebook!r}: parameter {self.name}: {why}")
            if self.names == "scorer":  # local weight paths resolved here, not in the kernel's folder
                from analysis.scorers import absolute_name

                value = absolute_name(value) if isinstance(value, str) else [absolute_name(v) for v in value]
        return value


NAME_KINDS = ("scorer", "dataset", "metric", "reward")


def reward_problem(name: str) -> str | None:
    """Why ``name`` is not a probe reward name, or ``None`` when it is; builds nothing.

    A reward is a CIDEr-D name, a scorer name (prefix forms included), ``score:<scorer>``,
    ``clip-s:<scorer>`` or ``mix:<any of the scorer forms>``, as
    :func:`analysis.captioning.rewards.make_reward` reads them (whether a ``clip-s:`` scorer is a dual
    encoder, and whether its weights exist, is found when the reward is built).

    >>> [reward_problem(n) is None for n in ("cider-d", "clip-mini", "mix:clip-mini", "clip-s:clip-mini")]
    [True, True, True, True]
    >>> reward_problem("mix:cider-d").split(";")[0]
    "unknown reward 'mix:cider-d': 'cider-d' is not a scorer"
    """
    from analysis.captioning.rewards import CIDER_NAMES, reward_names
    from analysis.registry import SCORERS

    if name in CIDER_NAMES:
        return None
    base = name.removeprefix("mix:")
    for prefix in ("score:", "clip-s:"):
        base = base.removeprefix(prefix)
    if base and base in SCORERS:
        return None
    why = f": {base!r} is not a scorer" if base != name else ""
    close = difflib.get_close_matches(base, [*CIDER_NAMES, *SCORERS.names()] if base == name else SCORERS.names(), n=3)
    hint = f" Did you mean {', '.join(name[:len(name) - len(base)] + c for c in close)}?" if close else ""
    return f"unknown reward {name!r}{why}; valid names: {', '.join(reward_names())}.{hint}"


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` is not a valid ``kind`` name (one of :data:`NAME_KINDS`), or ``None`` when it is."""
    if kind == "reward":
        return reward_problem(name)
    from analysis.registry import DATASETS, METRICS, SCORERS, UnknownNameError

    try:
        {"scorer": SCORERS, "dataset": DATASETS, "metric": METRICS}[kind].entry(name)
    except UnknownNameError as e:
        return str(e)
    return None


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
    # ---- The probe: one template per page kind; "probe" serves every reward page (registry.notebook_variants),
    # each of which fixes its own reward
    "probe-method": [SMOKE, SEED],
    "probe": [
        SMOKE, SEED,
        Param("reward", "str", "cider-d", "the SCST reward of this page: a probe system (analysis.probe.SYSTEMS) or "
              "any other reward name (a scorer, score:<scorer>, mix:<scorer>), trained with one seed", names="reward"),
        Param("n_boot", "int", 1000, "bootstrap resamples (over images and seeds) for every interval", minimum=100),
        Param("n_examples", "int", 8, "example test images shown with every system's caption", minimum=1,
              maximum=32),
    ],
    "probe-cross": [
        SMOKE, SEED,
        Param("n_boot", "int", 1000, "bootstrap resamples (over images and seeds) for every interval", minimum=100),
        Param("sheet_images", "int", 20, "test images on the blind human-evaluation sheet", minimum=1, maximum=119),
    ],
    "probe-decoding": [
        SMOKE, SEED,
        Param("scorers", "list", ["clip-mini", "uniter-mini", "lxmert-mini", "blind"],
              "scorers that guide the decoding (each re-ranks the prior's proposals)", names="scorer"),
        Param("priors", "list", ["xe", "smollm2"], "language-model priors that propose tokens: xe (the XE "
              "captioner, in-domain) and/or smollm2 (SmolLM2-135M-Instruct, open English, image-blind)"),
        Param("weights", "any", [0.0, 0.05, 0.2, 1.0], "prior weights w >= 0 of rank = score + w · LP / n^length_norm "
              "(LP the prior log-prob of the n tokens; 0: the scorer alone chooses among the proposals)"),
        Param("n_images", "int", 16, "test images decoded", minimum=1, maximum=119),
        Param("beam", "int", 3, "beam size", minimum=1, maximum=16),
        Param("top_k", "int", 5, "proposals per prefix", minimum=1, maximum=64),
        Param("max_len", "int", 12, "most tokens per caption", minimum=2, maximum=30),
        Param("length_norm", "float", 1.0, "exponent α of the prior term's length normalisation LP / n^α (0: the "
              "summed log-prob, which favours short captions)", minimum=0.0),
    ],
    "probe-findings": [
        SMOKE, SEED,
        Param("n_boot", "int", 1000, "bootstrap resamples (over images and seeds) for every interval", minimum=100),
    ],
    # ---- Realignment (ReCap)
    "realign-method": [
        SMOKE, SEED,
        Param("scorer", "str", "clip-mini", "the dual-encoder scorer whose image side is realigned", names="scorer"),
        Param("methods", "list", ["procrustes", "lstsq", "ridge", "robust-procrustes"],
              "closed-form maps (analysis.alignment.FITTERS)"),
        Param("folds", "int", 5, "folds of the transfer setting's GCompris photos", minimum=2, maximum=10),
        Param("n_boot", "int", 1000, "bootstrap resamples for every paired interval", minimum=100),
    ],
    "realign-speed": [
        SMOKE, SEED,
        Param("scorer", "str", "clip-mini", "the dual-encoder scorer whose pairs the mappers learn", names="scorer"),
        Param("max_seconds", "float", 60.0, "time budget of each gradient-trained mapper", minimum=0.1),
        Param("max_epochs", "int", 200, "epoch budget of each gradient-trained mapper", minimum=1),
    ],
    "realign-captions": [
        SMOKE, SEED,
        Param("scorer", "str", "clip-mini", "the dual-encoder scorer that embeds images and the datastore",
              names="scorer"),
        Param("lm", "str", "smollm2-135m-instruct", "the language model that writes from the retrieved captions: "
              "smollm2-135m-instruct (embedded) or flan-t5:<folder saved with save_pretrained>"),
        Param("k", "int", 5, "retrieved captions per image", minimum=1, maximum=20),
        Param("method", "str", "procrustes", "the closed-form map used for retrieval (analysis.alignment.FITTERS)"),
        Param("n_candidates", "int", 1, "captions generated per image; above 1 they are re-ranked by aCLIP-S",
              minimum=1, maximum=8),
        Param("n_images", "int", None, "test images captioned", minimum=2, optional=True,
              none_means="every test image"),
        Param("n_boot", "int", 1000, "bootstrap resamples for every paired interval", minimum=100),
    ],
    "realign-metrics": [
        SMOKE, SEED,
        Param("metrics", "list", ["bleu-4", "meteor", "rouge-l", "cider-d", "sg-f1", "clip-s:clip-mini",
                                  "refclip-s:clip-mini", "aclip-s:clip-mini", "refaclip-s:clip-mini", "score:blind"],
              "metrics correlated with the judgements", names="metric"),
        Param("sets", "list", ["scene-ladder", "stamp-match", "flickr8k-expert", "flickr8k-cf", "thumb"],
              "judgement sets (analysis.correlation.JUDGEMENT_SETS); rule-made ones run here, the human ones need "
              "the user's data ($STUDY_DATA)"),
        Param("noise_metrics", "list", ["clip-s:clip-mini", "aclip-s:clip-mini"],
              "metrics of the noise-robustness sweep (on the scene ladder)", names="metric"),
        Param("n_boot", "int", 1000, "bootstrap resamples (over images) for every interval", minimum=100),
    ],
    "findings": [SMOKE, SEED],
    "realign-bridge": [
        SMOKE, SEED,
        Param("scorer", "str", "clip-mini", "the dual-encoder scorer whose CLIP-S and aCLIP-S are the two SCST rewards",
              names="scorer"),
        Param("weights", "any", [0.0, 0.2], "prior weights w >= 0 of reward-guided decoding over the XE prior "
              "(0: the reward alone chooses among the prior's proposals)"),
        Param("n_images", "int", 16, "test images decoded by reward-guided decoding", minimum=1, maximum=119),
        Param("n_boot", "int", 1000, "bootstrap resamples (over images and seeds) for every interval", minimum=100),
        Param("n_examples", "int", 8, "example test images shown with every system's caption", minimum=1,
              maximum=32),
    ],
    "realign-findings": [
        SMOKE, SEED,
        Param("n_boot", "int", 1000, "bootstrap resamples for every interval", minimum=100),
    ],
    "reproducibility": [SMOKE, SEED],
}


def declare(notebook: str, params: list[Param], *, replace: bool = False) -> None:
    """Declare the parameters of ``notebook`` (for notebooks registered from a plugin): a page's name, or the
    base name (``variant_of``) of a set of variant pages, which then share this one declaration."""
    if notebook in DECLARED and not replace:
        raise ValueError(f"parameters of notebook {notebook!r} are already declared; pass replace=True")
    DECLARED[notebook] = list(params)


def template_values(notebook: str) -> dict[str, Any]:
    """The literals the ``parameters`` cell of ``notebook``'s template assigns, in order (not the page's fixed
    values)."""
    import nbformat

    from analysis.registry import notebook_template

    path = notebook_template(notebook)
    if not path.is_file():
        raise ParameterError(f"notebook {notebook!r}: its template {path} does not exist, so its parameters cannot be "
                             f"read; write the template, or fix meta['template'] of its NOTEBOOKS entry")
    nb = nbformat.read(path, as_version=4)
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


def declaration_key(notebook: str) -> str | None:
    """The key of ``notebook``'s parameter declaration in :data:`DECLARED`: the page's own name, else its base
    (``meta["variant_of"]``), else its template path as the registry writes it; ``None`` when undeclared (the
    template's ``parameters`` cell is then read)."""
    from analysis.registry import NOTEBOOKS

    meta = NOTEBOOKS.entry(notebook).meta  # unknown notebook -> UnknownNameError with the valid names
    for key in (notebook, meta.get("variant_of"), meta.get("template")):
        if key is not None and key in DECLARED:
            return key
    return None


def template_spec(notebook: str) -> dict[str, Param]:
    """``{name: Param}`` of ``notebook``'s *template*: its declaration, else what the template assigns; the
    defaults are the template's own, without the page's fixed values (see :func:`spec`)."""
    key = declaration_key(notebook)
    return {p.name: p for p in (DECLARED[key] if key is not None else _inferred(notebook))}


def fixed(notebook: str) -> dict[str, Any]:
    """The parameter values page ``notebook`` fixes (``meta["parameters"]``), checked against its template's
    declaration and normalised; a typo names the page and the registry entry to fix."""
    from analysis.registry import notebook_fixed

    values = notebook_fixed(notebook)
    if not values:
        return {}
    sp = template_spec(notebook)
    where = f"notebook {notebook!r} (its fixed parameters, meta['parameters'] of its NOTEBOOKS entry)"
    for k in values:
        if k not in sp:
            raise _unknown_key(k, list(sp), where)
    try:
        return {k: sp[k].check(v, notebook) for k, v in values.items()}
    except ParameterError as e:
        raise ParameterError(f"{e} This value is fixed by the page: correct meta['parameters'] of the NOTEBOOKS "
                             f"entry {notebook!r}.") from None


def spec(notebook: str) -> dict[str, Param]:
    """``{name: Param}`` for page ``notebook``: its template's (:func:`template_spec`), with the values the page
    fixes as the defaults."""
    import dataclasses

    sp = template_spec(notebook)
    for k, v in fixed(notebook).items():
        sp[k] = dataclasses.replace(sp[k], default=v)
    return sp


def defaults(notebook: str) -> dict[str, Any]:
    """The default of every parameter of page ``notebook``: the template's declared defaults overlaid with the
    values the page fixes."""
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
    """A plain-text table of ``notebook``'s parameters: name, type, default, help; a variant page says which
    template it runs and marks the values it fixes."""
    from analysis.registry import NOTEBOOKS

    sp, own, fix = spec(notebook), template_spec(notebook), fixed(notebook)
    w = max(len(k) for k in sp)
    tw = max(len(p.type_text()) for p in sp.values())
    lines = [f"parameters of notebook '{notebook}' (set with -p KEY VALUE; VALUE is YAML):"]
    if fix:
        lines.insert(0, f"notebook '{notebook}' is the template {NOTEBOOKS.entry(notebook).meta['template']} with "
                        + ", ".join(f"{k}={v!r}" for k, v in fix.items())
                        + " (its defaults make the book's page; other values make a run under book/generated/runs/)")
    for k, p in sp.items():
        extra = f"; None = {p.none_means}" if p.none_means else ""
        note = f" (fixed by this page; the template's default is {own[k].default!r})" if k in fix else ""
        lines.append(f"  {k:<{w}}  {p.type_text():<{tw}}  default {p.default!r}{note}\n  {'':<{w}}  {p.help}{extra}")
    return "\n".join(lines)
