"""The `analysis` package of the VLP-alignment study.

Everything that computes lives here; the notebooks in ``book/notebooks`` only call
it and show the result. Entry points:

* :mod:`analysis.registry` — names in, objects out (datasets, scorers, notebooks);
* :mod:`analysis.cache` — content-addressed, verified cache;
* :mod:`analysis.results` — tidy result rows with provenance, written atomically;
* ``python -m analysis --help`` — the command line.
"""
from analysis.runtime import seed_all, set_offline

set_offline()

__all__ = ["seed_all", "set_offline"]
__version__ = "0.1.0"
