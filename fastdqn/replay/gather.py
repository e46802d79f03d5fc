"""The replay's window gather on the GPU: one kernel writes B stacked windows from the
device-resident frame storage (fastdqn._cuda), validated like a torch op (fastdqn.frames.cuda)."""

from __future__ import annotations

import torch

from fastdqn.frames.cuda import check_cuda_tensor, current_stream, require_module
from fastdqn.frames.geometry import OUT_SIDE as _SIDE


def gather_windows(storage, index, out=None, *, check: bool = True):
    """out[..., :, :] = storage[index] with index -1 giving an all-zero frame, on the GPU.

    storage: torch.uint8 CUDA [S, 84, 84]; index: torch.int64 CUDA of any shape (e.g.
    [B, stack + 1]: one 5-frame window per sample, obs = out[:, :-1], next_obs = out[:, 1:]).
    Returns out: uint8 [*index.shape, 84, 84].
    check=True verifies -1 <= index < S first (one device sync) and raises ValueError; the
    replay's hot path passes check=False with indices it built itself (the kernel still never
    reads out of bounds: bad indices give zero frames).
    """
    check_cuda_tensor("storage", storage, torch.uint8)
    if storage.dim() != 3 or tuple(storage.shape[1:]) != (_SIDE, _SIDE):
        raise ValueError(f"storage: expected shape [S, 84, 84], got {list(storage.shape)}")
    dev = storage.device
    check_cuda_tensor("index", index, torch.int64, None, dev)
    shape = (*index.shape, _SIDE, _SIDE)
    if out is None:
        out = torch.empty(shape, dtype=torch.uint8, device=dev)
    else:
        check_cuda_tensor("out", out, torch.uint8, shape, dev)
    num = int(storage.shape[0])
    if check and index.numel():
        lo, hi = int(index.min()), int(index.max())
        if lo < -1 or hi >= num:
            raise ValueError(f"index: expected values in [-1, {num}), got min {lo}, max {hi}")
    mod = require_module()
    if index.numel() == 0:
        return out
    mod.gather_windows(
        storage.data_ptr(),
        num,
        index.data_ptr(),
        index.numel(),
        out.data_ptr(),
        dev.index if dev.index is not None else torch.cuda.current_device(),
        current_stream(dev),
    )
    return out
