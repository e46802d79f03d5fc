"""Device resolution, the one place a user's ``device=`` becomes a ``torch.device``; and ``upload``,
the host-to-device copy that does not sync."""

from __future__ import annotations

import numpy as np
import torch

EXPECTED = "'auto', 'cpu' or 'cuda'"


def resolve_device(device: str | int | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when torch sees a device, else the CPU. Otherwise anything ``torch.device``
    takes that names the CPU or a CUDA device (``"cuda:1"``, ``1``, a ``torch.device``). A CUDA
    device always has its index (``"cuda"`` is the current one, ``cuda:0`` say), so it compares
    equal to a CUDA tensor's ``.device``. A wrong type is a TypeError, a device that is not there
    a ValueError, both naming what came."""
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(f"device: expected {EXPECTED}, got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected {EXPECTED}, got {str(device)!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: expected 'cpu' or 'auto' on this machine, got {str(device)!r} (no CUDA device)")
    if dev.type == "cuda" and dev.index is None:  # torch.device("cuda") != torch.device("cuda:0")
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def upload(host, device: torch.device) -> torch.Tensor:
    """``host`` (a numpy array or tensor) as a new tensor on ``device``, without a sync. To CUDA it
    crosses from a fresh pinned block of torch's caching host allocator, whose non_blocking copy
    records the stream on the block, so the block is not handed out (refilled) again before the
    copy is done; a pageable source would copy synchronously. Elsewhere: a copy (the caller may
    refill its array)."""
    src = torch.from_numpy(host) if isinstance(host, np.ndarray) else host
    if not isinstance(src, torch.Tensor):
        raise TypeError(f"host: expected a numpy array or a tensor, got {type(host).__name__}")
    if device.type != "cuda" or src.device.type != "cpu":
        return src.to(device, non_blocking=device.type == "cuda", copy=True)  # to the host: blocking, readable
    pinned = torch.empty(src.shape, dtype=src.dtype, pin_memory=True)
    pinned.copy_(src)
    return pinned.to(device, non_blocking=True)
