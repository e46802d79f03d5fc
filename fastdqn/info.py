"""`fastdqn info`: what this installation has."""

from __future__ import annotations

import importlib
import importlib.util
import platform


def _version(mod: str) -> str:
    try:
        return getattr(importlib.import_module(mod), "__version__", "installed")
    except Exception as e:  # noqa: BLE001 - report, never fail
        return f"not available ({type(e).__name__})"


def collect() -> dict:
    import torch

    import fastdqn

    info = {"fastdqn": fastdqn.__version__, "python": platform.python_version(), "platform": platform.platform()}
    for mod in ("torch", "numpy", "gymnasium", "ale_py", "cv2", "numba"):
        info[mod] = _version(mod)
    info["fastdqn._core (C++)"] = "built" if importlib.util.find_spec("fastdqn._core") else "not built"
    try:
        from fastdqn.preprocess import backends

        info["preprocess backends"] = ", ".join(backends())
    except Exception as e:  # noqa: BLE001
        info["preprocess backends"] = f"unknown ({type(e).__name__}: {e})"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["cuda device"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch CUDA {torch.version.cuda}"
    else:
        info["cuda device"] = "none (torch.cuda.is_available() is False)"
    found = [m for m in ("fastdqn._cuda", "fastdqn.cuda") if importlib.util.find_spec(m)]
    kernel = "not built"
    if "fastdqn._cuda" in found:
        kernel = "built (fastdqn._cuda)"
    elif "fastdqn.cuda" in found:
        try:
            cuda = importlib.import_module("fastdqn.cuda")
            ok = getattr(cuda, "available", None)
            kernel = "built" if (ok() if callable(ok) else ok) else "not built"
        except Exception as e:  # noqa: BLE001
            kernel = f"not loadable ({type(e).__name__})"
    info["cuda kernels"] = kernel
    info["cpu threads (torch)"] = str(torch.get_num_threads())
    return info


def print_info() -> None:
    info = collect()
    width = max(map(len, info))
    for k, v in info.items():
        print(f"{k:<{width}}  {v}")
