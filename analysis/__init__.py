"""The `analysis` package of the VLP-alignment study.

Everything that computes lives here; the notebooks in ``book/notebooks`` only call
it and show the result. Entry points:

* :mod:`analysis.registry` — names in, objects out (datasets, scorers, notebooks);
* :mod:`analysis.cache` — content-addressed, verified cache;
* :mod:`analysis.results` — tidy result rows with provenance, written atomically;
* :mod:`analysis.parameters` — every notebook's parameters, declared once;
* ``python -m analysis --help`` — the command line.

Modules named in ``$STUDY_PLUGINS`` (comma-separated) are imported at the end of this
import, in every process that imports ``analysis`` (notebook kernels included).
"""
from analysis.runtime import load_plugins, seed_all, set_offline

__all__ = ["load_plugins", "seed_all", "set_offline"]
__version__ = "0.1.0"

set_offline()
load_plugins()  # $STUDY_PLUGINS: modules that register datasets, scorers, notebooks from outside
