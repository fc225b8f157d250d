"""Image–text scorers behind one contract (:class:`analysis.scorers.base.Scorer`).

Build them by name with :func:`analysis.registry.get_scorer`. Where things live:

* ``base``: the contract (``score``, ``score_matrix``, provenance, caption checks);
* ``clip``, ``single_stream``, ``two_stream``, ``weights``: published / local checkpoints;
* the embedded stand-ins: ``standins`` (the table of stand-ins, their scorers and builders),
  ``configs`` (hyper-parameters, default vs ``+neg``), ``networks`` (the trained modules),
  ``objectives`` (losses), ``inputs`` (tower features the nets read), ``training``
  (training set, sampler, loop, checkpoints), ``validation`` (the held-out metric in each
  checkpoint's meta) and ``blind`` (the text-only baselines).
"""
from __future__ import annotations

HF_PREFIXES = ("vilt:", "lxmert:", "blip-itm:")


def absolute_name(name: str) -> str:
    """A scorer name with any local path in it made absolute in *this* process.

    ``clip:ViT-B-32/./ckpt.pt`` -> ``clip:ViT-B-32//home/me/ckpt.pt``; ``vilt:models/vilt`` ->
    ``vilt:/home/me/models/vilt`` (when that folder exists or the text starts like a path).
    Registry names and tags are returned unchanged. Call it where the user typed the name
    (the command line), before the name is handed to a notebook kernel with another cwd.
    """
    if name.startswith("clip:") and len(name) > len("clip:"):
        from analysis.scorers.clip import absolute_spec

        try:
            return "clip:" + absolute_spec(name[len("clip:"):])
        except ValueError:  # a malformed spec: building the scorer says what is wrong with it
            return name
    for prefix in HF_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            from analysis.scorers.weights import absolute_spec

            return prefix + absolute_spec(name[len(prefix):], prefix)
    return name
