"""The one loader of fastdqn's compiled modules: ``_core`` (C++) and ``_cuda`` (optional, CUDA).

Imported lazily by the stages that need them, so ``import fastdqn`` stays light. When a module
is missing the error says where fastdqn was imported from and what works: a source checkout has
no compiled modules (Python put the current folder first on ``sys.path``), while an installed
copy without them needs a reinstall.
"""

from __future__ import annotations

import importlib
import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

_loaded: dict[str, object] = {}
_errors: dict[str, str] = {}


class NativeModuleMissing(ImportError):
    """A compiled fastdqn module is not importable here; the message says why and what to do."""


def _in_source_checkout() -> bool:
    root = os.path.dirname(PACKAGE_DIR)
    return os.path.isfile(os.path.join(root, "pyproject.toml")) and os.path.isdir(os.path.join(root, "csrc"))


def missing_message(name: str) -> str:
    """Why ``fastdqn.<name>`` is missing, in one line that names the folder and the fix."""
    where = f"fastdqn was imported from {PACKAGE_DIR}"
    if _in_source_checkout():
        return (f"fastdqn.{name} is not built: {where}, a source checkout without compiled modules "
                "(Python looks in the current folder first). Run Python outside the checkout to use the "
                "installed fastdqn, or install it in editable mode: pip install --no-build-isolation -e .")
    return f"fastdqn.{name} is not built: {where}; reinstall fastdqn with `pip install .`"


def _load(name: str):
    if name not in _loaded and name not in _errors:
        try:
            _loaded[name] = importlib.import_module(f"fastdqn.{name}")
        except ImportError as e:
            # Only a module that is not there counts as "not built"; one that is there but fails
            # to load (an undefined symbol, a missing libcudart) is reported with its own error.
            if isinstance(e, ModuleNotFoundError) and e.name == f"fastdqn.{name}":
                _errors[name] = missing_message(name)
            else:
                _errors[name] = f"fastdqn.{name} failed to load: {type(e).__name__}: {e}"
    return _loaded.get(name)


def core():
    """``fastdqn._core``; NativeModuleMissing (an ImportError) with the reason when it is not built."""
    mod = _load("_core")
    if mod is None:
        raise NativeModuleMissing(_errors["_core"])
    return mod


def core_or_none():
    """``fastdqn._core`` or None (the preprocessing front end then falls back to Numba)."""
    return _load("_core")


def cuda_or_none():
    """``fastdqn._cuda`` or None: it is optional (built only where nvcc was found and compiled it)."""
    return _load("_cuda")


def why_missing(name: str) -> str:
    """The reason ``fastdqn.<name>`` did not load ('' when it did)."""
    _load(name)
    return _errors.get(name, "")
