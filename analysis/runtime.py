"""Process-wide settings: one seed function and the offline switches.

``seed_all`` is the only place the study seeds random number generators; every
experiment takes ``seed`` as a parameter, calls ``seed_all(seed)`` and writes the
seed into its result rows.
"""
from __future__ import annotations

import os
import random

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore::FutureWarning"}


def set_offline() -> dict[str, str]:
    """Set the hub-offline variables (no download is ever attempted) and return them."""
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    return dict(OFFLINE_ENV)


def seed_all(seed: int) -> int:
    """Seed ``random``, NumPy and (if imported) torch with ``seed``; return it.

    torch is seeded and switched to deterministic algorithms only when it is
    installed; CPU kernels used here are deterministic for a fixed thread count.
    """
    seed = int(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
    except ImportError:  # pragma: no cover
        pass
    return seed


def rng(seed: int):
    """A NumPy ``Generator`` for ``seed`` (use this, never the global state, inside functions)."""
    import numpy as np

    return np.random.default_rng(int(seed))


def device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"`` (override with ``STUDY_DEVICE``)."""
    if os.environ.get("STUDY_DEVICE"):
        return os.environ["STUDY_DEVICE"]
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"
