"""`fastdqn info`: what this installation has."""

from __future__ import annotations

import importlib
import platform

from fastdqn import _native
from fastdqn.frames import backends, cuda


def version_of(mod: str) -> str:
    try:
        return getattr(importlib.import_module(mod), "__version__", "installed")
    except ImportError as e:  # report a missing or broken dependency, never fail on it
        return f"not available ({type(e).__name__}: {e})"


def collect() -> dict:
    import torch

    import fastdqn

    info = {"fastdqn": fastdqn.__version__, "python": platform.python_version(), "platform": platform.platform()}
    for mod in ("torch", "numpy", "gymnasium", "ale_py", "cv2", "numba"):
        info[mod] = version_of(mod)
    info["fastdqn._core (C++)"] = "built" if _native.core_or_none() is not None else _native.why_missing("_core")
    info["preprocess backends"] = ", ".join(backends())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["cuda device"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch CUDA {torch.version.cuda}"
    else:
        info["cuda device"] = "none (torch.cuda.is_available() is False)"
    if _native.cuda_or_none() is None:
        info["cuda kernels"] = _native.why_missing("_cuda")
    else:
        info["cuda kernels"] = "built (fastdqn._cuda)" + ("" if cuda.available() else ", no usable device")
    info["cpu threads (torch)"] = str(torch.get_num_threads())
    return info


def print_info() -> None:
    info = collect()
    width = max(map(len, info))
    for k, v in info.items():
        print(f"{k:<{width}}  {v}")
