"""Numba fallback of the fused preprocessing kernel: the same integer arithmetic as csrc/preprocess.hpp
(RGB screens: floor of the luma's area average; grey screens: the area average rounded half up)."""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
from numba import njit

from fastdqn.frames.geometry import CROP_FIRST, CROP_ROWS, OUT_SIDE, RAW_WIDTH


def area_taps(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer INTER_AREA taps: (first input index [out], weights [out, max_taps], units per output)."""
    g = gcd(in_len, out_len)
    a, b = out_len // g, in_len // g  # input cell length, output cell length, in common units
    max_taps = -(-b // a) + 1
    first = np.empty(out_len, np.int64)
    weight = np.zeros((out_len, max_taps), np.int64)
    for o in range(out_len):
        lo, hi = o * b, (o + 1) * b
        first[o] = lo // a
        i = lo // a
        while i * a < hi:
            weight[o, i - first[o]] = min(hi, (i + 1) * a) - max(lo, i * a)
            i += 1
    return first, weight, b


@lru_cache(maxsize=None)
def kernel_tables(height: int, layout: str):
    """(row firsts, row taps, column firsts, column taps, units_y * units_x) of one screen height and layout."""
    rows_out, first_row = (CROP_ROWS, CROP_FIRST) if layout == "crop" else (OUT_SIDE, 0)
    row_first, row_w, by = area_taps(height, rows_out)
    col_first, col_w, bx = area_taps(RAW_WIDTH, OUT_SIDE)
    keep = slice(first_row, first_row + OUT_SIDE)
    return row_first[keep].copy(), row_w[keep].copy(), col_first, col_w, by * bx


@njit(cache=True, nogil=True)
def _process(frames, prev, use_prev, out, row_first, row_w, col_first, col_w, divisor):
    n = frames.shape[0]
    width = frames.shape[2]
    acc = np.zeros((width, 3), np.int64)
    luma = np.zeros(width + 4, np.int64)
    for f in range(n):
        for y in range(OUT_SIDE):
            acc[:] = 0
            for k in range(row_w.shape[1]):
                w = row_w[y, k]
                if w == 0:
                    break
                r = row_first[y] + k
                for c in range(width):
                    for ch in range(3):
                        v = frames[f, r, c, ch]
                        if use_prev:
                            v = max(v, prev[f, r, c, ch])
                        acc[c, ch] += w * v
            for c in range(width):
                luma[c] = 299 * acc[c, 0] + 587 * acc[c, 1] + 114 * acc[c, 2]
            for x in range(OUT_SIDE):
                total = 0
                for k in range(col_w.shape[1]):
                    total += col_w[x, k] * luma[col_first[x] + k]
                out[f, y, x] = total // divisor


@njit(cache=True, nogil=True)
def _process_grey(frames, prev, use_prev, out, row_first, row_w, col_first, col_w, units):
    n = frames.shape[0]
    width = frames.shape[2]
    acc = np.zeros(width + 4, np.int64)
    for f in range(n):
        for y in range(OUT_SIDE):
            acc[:] = 0
            for k in range(row_w.shape[1]):
                w = row_w[y, k]
                if w == 0:
                    break
                r = row_first[y] + k
                for c in range(width):
                    v = frames[f, r, c]
                    if use_prev:
                        v = max(v, prev[f, r, c])
                    acc[c] += w * v
            for x in range(OUT_SIDE):
                total = 0
                for k in range(col_w.shape[1]):
                    total += col_w[x, k] * acc[col_first[x] + k]
                out[f, y, x] = (2 * total + units) // (2 * units)  # rounded half up


def process_batch_numba(frames: np.ndarray, prev: np.ndarray | None, out: np.ndarray, layout: str) -> None:
    """RGB [N, H, 160, 3] or grey [N, H, 160] screens (max-pooled with ``prev``) into ``out`` [N, 84, 84]."""
    row_first, row_w, col_first, col_w, units = kernel_tables(frames.shape[1], layout)
    use_prev = prev is not None
    if frames.ndim == 3:
        _process_grey(frames, prev if use_prev else frames, use_prev, out, row_first, row_w, col_first, col_w, units)
    else:
        _process(frames, prev if use_prev else frames, use_prev, out, row_first, row_w, col_first, col_w,
                 1000 * units)
