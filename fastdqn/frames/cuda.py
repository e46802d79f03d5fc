"""CUDA kernels on torch tensors: the fused frame preprocessing (the replay's gather: fastdqn.replay.gather).

The kernels live in the optional extension ``fastdqn._cuda`` (built where nvcc, on PATH or under
CUDA_HOME, compiles them). They take raw device pointers and the caller's current stream, so this
module validates every tensor first (dtype, device, shape, contiguity) and raises
``TypeError``/``ValueError`` naming what was expected and what came; libtorch is never linked. Everything runs asynchronously on
``torch.cuda.current_stream(device)``, like a torch op.
"""

from __future__ import annotations

import torch

from fastdqn import _native
from fastdqn.frames.geometry import LAYOUTS, OUT_SIDE, RAW_HEIGHTS as FRAME_HEIGHTS

_SIDE = OUT_SIDE

_cuda = _native.cuda_or_none()  # optional: the package works without the CUDA module

__all__ = ["available", "process_batch_cuda", "check_cuda_tensor", "current_stream", "FRAME_HEIGHTS", "LAYOUTS"]


def available() -> bool:
    """True when fastdqn._cuda is built and both torch and the module's own CUDA runtime see a
    device (the module links the runtime statically: a driver too old for it shows up here,
    with the reason in ``fastdqn._cuda.device_error()``)."""
    return _cuda is not None and torch.cuda.is_available() and _cuda.device_count() > 0


def unavailable_reason() -> str:
    """Why ``available()`` is False ('' when it is True)."""
    if _cuda is None:
        return _native.why_missing("_cuda")
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if _cuda.device_count() == 0:
        return f"fastdqn._cuda sees no device: {_cuda.device_error()}"
    return ""


def require_module():
    if _cuda is None:
        raise RuntimeError(
            _native.why_missing("_cuda") + " (reinstall where nvcc is on PATH or under CUDA_HOME; "
            "FASTDQN_CUDA=ON makes a failed CUDA build an error)"
        )
    return _cuda


def check_cuda_tensor(name: str, t, dtype: torch.dtype, shape=None, device=None) -> None:
    """Raise TypeError/ValueError unless t is a contiguous CUDA tensor of dtype (and shape)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {t.dtype}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")
    if t.device.type != "cuda":
        raise ValueError(f"{name}: expected a CUDA tensor, got device {t.device}")
    if device is not None and t.device != device:
        raise ValueError(f"{name}: expected device {device} (that of the first input), got {t.device}")
    if not t.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor, got strides {list(t.stride())}")


def current_stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def process_batch_cuda(frames, prev=None, *, layout: str = "crop", out=None, out_index=None):
    """Max-pool (with prev), luma, area-resize and crop N raw frames on the GPU.

    frames, prev: torch.uint8 CUDA [N, H, 160, 3], H in (210, 250), contiguous.
    Returns out: torch.uint8 [N, 84, 84] with the same numbers as the C++ kernel
    (floor of the exact area average of 0.299R + 0.587G + 0.114B).
    out_index (int64 CUDA [N]) writes frame k to out[out_index[k]] instead, so new frames go
    straight into a GPU replay's storage ([S, 84, 84]); indices must be distinct and in [0, S)
    (out-of-range ones are skipped, never written).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames: expected a torch.Tensor, got {type(frames).__name__}")
    if frames.dim() != 4 or frames.shape[1] not in FRAME_HEIGHTS or tuple(frames.shape[2:]) != (160, 3):
        raise ValueError(f"frames: expected shape [N, 210 or 250, 160, 3], got {list(frames.shape)}")
    check_cuda_tensor("frames", frames, torch.uint8)
    n, h = int(frames.shape[0]), int(frames.shape[1])
    dev = frames.device
    if prev is not None:
        check_cuda_tensor("prev", prev, torch.uint8, frames.shape, dev)
    if out_index is None:
        if out is None:
            out = torch.empty((n, _SIDE, _SIDE), dtype=torch.uint8, device=dev)
        else:
            check_cuda_tensor("out", out, torch.uint8, (n, _SIDE, _SIDE), dev)
    else:
        check_cuda_tensor("out_index", out_index, torch.int64, (n,), dev)
        if out is None:
            raise ValueError("out: required when out_index is given (the storage to write into)")
        check_cuda_tensor("out", out, torch.uint8, None, dev)
        if out.dim() != 3 or tuple(out.shape[1:]) != (_SIDE, _SIDE):
            raise ValueError(f"out: expected shape [S, 84, 84], got {list(out.shape)}")
    mod = require_module()
    if n == 0:
        return out
    mod.preprocess(
        frames.data_ptr(),
        0 if prev is None else prev.data_ptr(),
        out.data_ptr(),
        n,
        h,
        layout,
        dev.index if dev.index is not None else torch.cuda.current_device(),
        current_stream(dev),
        0 if out_index is None else out_index.data_ptr(),
        int(out.shape[0]),
    )
    return out
