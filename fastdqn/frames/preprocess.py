"""Fused Atari frame preprocessing: max-pool, luma, INTER_AREA resize and crop in one pass.

Two inputs, as the pool order (``EnvSpec.pool``) says:
- RGB screens [H, 160, 3] (``pool="rgb"``: max of two RGB screens, then luma; the order of the
  book chapter's wrappers and Nature DQN);
- ALE's grey screens [H, 160] (``pool="grey"``: ALE's per-colour luma, then max; the order of
  gymnasium's AtariPreprocessing and Dopamine).

Backends compute the same thing:
- ``"cpp"``: the C++ kernel in ``fastdqn._core`` (multi-threaded over a batch, GIL released);
- ``"numba"``: the same integer arithmetic under ``@njit`` (the fallback when ``_core`` is missing);
- ``"opencv"``: the reference. RGB: the book chapter's float pipeline (float luma,
  ``cv2.resize`` INTER_AREA in float32, truncating cast). Grey: ``cv2.resize`` INTER_AREA of the
  uint8 image, as AtariPreprocessing does.

``cpp`` and ``numba`` agree bit for bit. RGB: ``floor`` of the exact area average of
``0.299 R + 0.587 G + 0.114 B``; the float reference rounds on the way and can land one grey
level lower or higher where that average sits next to an integer. Grey: the exact area average
rounded half up; OpenCV rounds it in float, so it can differ by one level at a half.

Layouts: ``"crop"`` (the book chapter's ProcessFrame84: resize to 84x110, keep rows 18..101) and
``"full"`` (baselines' WarpFrame: resize straight to 84x84).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from fastdqn import _native
from fastdqn.frames.geometry import CROP_FIRST, CROP_ROWS, LAYOUTS, OUT_SHAPE, OUT_SIDE, POOLS, RAW_HEIGHTS, RAW_WIDTH

_core = _native.core_or_none()
if _core is None:
    warnings.warn(f"{_native.why_missing('_core')}; preprocessing falls back to the numba backend",
                  RuntimeWarning, stacklevel=2)


def backends() -> list[str]:
    """Names of the backends usable here, fastest first."""
    return (["cpp"] if _core is not None else []) + ["numba", "opencv"]


def default_backend() -> str:
    return backends()[0]


def _check_raw(frames: np.ndarray, name: str, batched: bool) -> None:
    n = "N, " if batched else ""
    expected = f"({n}210|250, 160, 3) (RGB) or ({n}210|250, 160) (grey)"
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"{name}: expected a numpy uint8 array of shape {expected}, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise TypeError(f"{name}: expected dtype uint8, got {frames.dtype}")
    shape = frames.shape[1:] if batched else frames.shape
    if len(shape) not in (2, 3) or shape[0] not in RAW_HEIGHTS or shape[1:] not in ((RAW_WIDTH, 3), (RAW_WIDTH,)):
        raise ValueError(f"{name}: expected shape {expected}, got {frames.shape}")
    if not frames.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array (use np.ascontiguousarray), got a strided view")


def _check_args(frames, prev, layout, out, backend, batched):
    _check_raw(frames, "frames" if batched else "frame", batched)
    if prev is not None:
        _check_raw(prev, "prev", batched)
        if prev.shape != frames.shape:
            raise ValueError(f"prev: expected the frames' shape {frames.shape}, got {prev.shape}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    backend = default_backend() if backend is None else backend
    if backend not in backends():
        raise ValueError(f"backend: expected one of {backends()}, got {backend!r}")
    out_shape = (frames.shape[0], *OUT_SHAPE) if batched else OUT_SHAPE
    if out is None:
        out = np.empty(out_shape, np.uint8)
    elif not isinstance(out, np.ndarray) or out.dtype != np.uint8:
        raise TypeError(f"out: expected a numpy uint8 array, got {getattr(out, 'dtype', type(out).__name__)}")
    elif out.shape != out_shape or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out: expected a writable C-contiguous array of shape {out_shape}, got {out.shape}")
    return backend, out


def process_batch(frames, prev=None, *, layout="crop", out=None, backend=None, threads=None) -> np.ndarray:
    """Preprocess N raw screens, RGB [N, 210, 160, 3] or grey [N, 210, 160] (max-pooled with ``prev``
    when given), into [N, 84, 84] uint8."""
    backend, out = _check_args(frames, prev, layout, out, backend, batched=True)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)):
        raise TypeError(f"threads: expected an int or None, got {type(threads).__name__}")
    if backend == "cpp":
        _core.preprocess_batch(frames, prev, out, layout, 0 if threads is None else int(threads))
    elif backend == "numba":
        from fastdqn.frames.numba_kernel import process_batch_numba  # numba compiles on first use: import it then

        process_batch_numba(frames, prev, out, layout)
    else:
        for i in range(frames.shape[0]):
            out[i] = chapter_process(frames[i] if prev is None else np.maximum(frames[i], prev[i]), layout)
    return out


def process_frame(frame, prev=None, *, layout="crop", out=None, backend=None) -> np.ndarray:
    """Preprocess one raw screen, RGB [210, 160, 3] or grey [210, 160] (max-pooled with ``prev`` when
    given), into [84, 84] uint8."""
    backend, out = _check_args(frame, prev, layout, out, backend, batched=False)
    process_batch(frame[None], None if prev is None else prev[None], layout=layout, out=out[None],
                  backend=backend, threads=1)
    return out


def chapter_process(frame: np.ndarray, layout: str = "crop") -> np.ndarray:
    """The reference. RGB: the book chapter's ProcessFrame84 (or WarpFrame for ``"full"``): float
    luma, INTER_AREA, truncating cast. Grey: INTER_AREA of the uint8 image (AtariPreprocessing)."""
    import cv2

    if frame.ndim == 2:
        rows = CROP_ROWS if layout == "crop" else OUT_SIDE
        first = CROP_FIRST if layout == "crop" else 0
        return cv2.resize(frame, (OUT_SIDE, rows), interpolation=cv2.INTER_AREA)[first:first + OUT_SIDE].copy()
    img = frame.astype(np.float32)
    luma = img[:, :, 0] * 0.299 + img[:, :, 1] * 0.587 + img[:, :, 2] * 0.114
    if layout == "crop":
        resized = cv2.resize(luma, (OUT_SIDE, CROP_ROWS), interpolation=cv2.INTER_AREA)
        return resized[CROP_FIRST:CROP_FIRST + OUT_SIDE].astype(np.uint8)
    return cv2.resize(luma, OUT_SHAPE, interpolation=cv2.INTER_AREA).astype(np.uint8)


def grey_levels(frame: np.ndarray) -> np.ndarray:
    """An RGB image (H, W, 3) uint8 as grey levels the way ALE makes its grey screens:
    round(0.2989 R + 0.587 G + 0.114 B), uint8 (H, W)."""
    rgb = frame.astype(np.int32)
    return ((rgb @ np.array([2989, 5870, 1140], np.int32) + 5000) // 10000).astype(np.uint8)


def process_any(frame: np.ndarray, layout: str = "full", pool: str = "rgb") -> np.ndarray:
    """One RGB image of any size (H, W, 3) uint8 -> uint8 [84, 84]: ``process_frame`` when it is
    an Atari screen, else OpenCV's uint8 luma and INTER_AREA resize (the common fast path).
    ``pool="grey"``: its grey levels (``grey_levels``) first, then the same for a grey screen."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame: expected an RGB image (H, W, 3) uint8, got {getattr(frame, 'dtype', type(frame))} "
                         f"{getattr(frame, 'shape', '')}")
    if pool not in POOLS:
        raise ValueError(f"pool: expected one of {POOLS}, got {pool!r}")
    image = grey_levels(frame) if pool == "grey" else frame
    if frame.shape[0] in RAW_HEIGHTS and frame.shape[1] == RAW_WIDTH:
        return process_frame(image, layout=layout)
    import cv2

    grey = image if pool == "grey" else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, OUT_SHAPE, interpolation=cv2.INTER_AREA)
