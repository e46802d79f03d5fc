"""Machine header for every report: tables from different machines never mix."""

from __future__ import annotations

import os
import platform

from fastdqn.frames import preprocess
from fastdqn.info import version_of


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import numpy as np
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    backends = list(preprocess.backends())
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba": version_of("numba"),
        "opencv": version_of("cv2"),
        "ale_py": version_of("ale_py"),
        "fastdqn": version_of("fastdqn"),
        "preprocess_backends": backends,
    }


def header_line(m: dict) -> str:
    gpu = m.get("gpu") or "no GPU"
    return (f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable, torch threads {m['torch_threads']}), "
            f"{gpu}; Python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, numba {m['numba']}, "
            f"OpenCV {m['opencv']}, ale-py {m['ale_py']}")


def titled(title: str, m: dict) -> str:
    """A table's title with the CPU it ran on: a table copied out of its report still says where."""
    return f"{title} ({m.get('cpu') or 'unknown CPU'})"
