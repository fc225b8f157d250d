"""Process-wide settings: one seed function, the offline switches and the plugin hook.

``seed_all`` is the only place the study seeds random number generators; every
experiment takes ``seed`` as a parameter, calls ``seed_all(seed)`` and writes the
seed into its result rows.

``$STUDY_PLUGINS`` (``mod1,mod2``) names modules imported whenever ``analysis`` is
imported: in the command line's process and in every notebook kernel, so entries they
register (``DATASETS.register(...)``, ``SCORERS.register(...)``) exist in both.
"""
from __future__ import annotations

import importlib
import os
import random
import sys
from contextlib import contextmanager
from pathlib import Path

PLUGINS_ENV = "STUDY_PLUGINS"


class PluginError(ImportError):
    """A module named in ``$STUDY_PLUGINS`` could not be imported; the message names it."""


def plugin_names(value: str | None = None) -> list[str]:
    """Module names in ``value`` (default ``$STUDY_PLUGINS``), split on commas, blanks dropped."""
    value = os.environ.get(PLUGINS_ENV, "") if value is None else value
    return [m.strip() for m in value.split(",") if m.strip()]


def load_plugins(value: str | None = None) -> list[str]:
    """Import every module named in ``$STUDY_PLUGINS`` (once each); return their names.

    A module that fails to import raises :class:`PluginError` naming the module, the variable
    and the cause, with the import path to check.
    """
    loaded = []
    for name in plugin_names(value):
        try:
            importlib.import_module(name)
        except Exception as e:
            raise PluginError(
                f"{PLUGINS_ENV} names module {name!r}, which failed to import: {type(e).__name__}: {e}. "
                f"Fix the module, put its folder on PYTHONPATH, or remove it from {PLUGINS_ENV}="
                f"{os.environ.get(PLUGINS_ENV, value)!r}.") from e
        loaded.append(name)
    return loaded


def plugin_paths() -> list[str]:
    """The import-path folders the loaded plugin modules came from (so a kernel started in another
    folder finds them too): for module ``a.b`` in ``/x/a/b.py``, ``/x``."""
    out = []
    for name in plugin_names():
        mod = sys.modules.get(name)
        file = getattr(mod, "__file__", None)
        if not file:
            continue
        up = Path(file).resolve().parent
        for _ in range(name.count(".") + (Path(file).name == "__init__.py")):
            up = up.parent
        if str(up) not in out:
            out.append(str(up))
    return out

def import_path() -> str:
    """``$PYTHONPATH`` for a process that starts in another folder (a notebook kernel, a Ray worker): the folders
    of the loaded plugins (:func:`plugin_paths`), then this process's ``$PYTHONPATH`` entries, each made absolute,
    each once; ``""`` when there are none."""
    entries = [*plugin_paths(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(str(Path(p).expanduser().resolve()) for p in entries))


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


_default_device = device  # resolve_device's argument shadows the name


class DeviceUnavailable(RuntimeError):
    """The device asked for (an argument, ``$STUDY_DEVICE`` or ``--device``) is not usable here; the message
    names it, where it came from, what this machine has and how to choose another."""


DEVICE_FORMS = "cpu, cuda, cuda:N, mps"


def resolve_device(device: str | None = None) -> str:
    """``device``, else :func:`device` (``$STUDY_DEVICE``, else CUDA when visible, else CPU), checked: a malformed
    name is a ``ValueError`` and a CUDA or MPS device this machine lacks a :class:`DeviceUnavailable`, both naming
    the device and the fix, before any model is built. The name is returned as given (``"cuda:1"`` stays
    ``"cuda:1"``).

    >>> resolve_device("cpu")
    'cpu'
    """
    source = "the device argument" if device else (
        "$STUDY_DEVICE (set by --device)" if os.environ.get("STUDY_DEVICE") else "the default")
    device = str(device or _default_device())
    try:
        import torch
    except ImportError:  # pragma: no cover
        return device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} (from {source}) is not a device name; use one of {DEVICE_FORMS}") from None
    fix = "Run with --device cpu (or unset STUDY_DEVICE)"
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise DeviceUnavailable(f"device {device!r} (from {source}) was asked for, but torch sees no CUDA GPU "
                                    f"on this machine (torch {torch.__version__}, built with CUDA "
                                    f"{torch.version.cuda or 'none'}). {fix}.")
        if dev.index is not None and dev.index >= n:
            raise DeviceUnavailable(f"device {device!r} (from {source}) was asked for, but this machine has {n} "
                                    f"CUDA GPU(s): cuda:0..cuda:{n - 1}. {fix}, or name one of those.")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailable(f"device {device!r} (from {source}) was asked for, but Apple MPS is not "
                                    f"available here. {fix}.")
    return device


def module_device(module, default: str | None = None) -> str:
    """The device of ``module``'s first parameter as a string (``"cpu"``, ``"cuda:0"``); for an object without
    parameters, ``default`` resolved by :func:`resolve_device`."""
    p = next(iter(module.parameters()), None) if hasattr(module, "parameters") else None
    return str(p.device) if p is not None else resolve_device(default)


@contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op CPU threads, restoring the previous count afterwards (results of
    CPU kernels are deterministic for a fixed thread count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
