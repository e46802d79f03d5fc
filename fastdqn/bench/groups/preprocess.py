"""Preprocessing: raw RGB pair -> max-pool -> luma -> area resize -> crop, per frame."""

from __future__ import annotations

import os

import numpy as np
import torch

from fastdqn.frames import cuda as frames_cuda
from fastdqn.frames import preprocess as pre

from .. import baselines as bl
from ..config import BenchConfig
from ..inputs import pong_frames
from ..model import Case, TableSpec

GROUP = "preprocess"


def _max_diff(out: np.ndarray, ref: np.ndarray) -> int:
    return int(np.abs(out.astype(np.int16) - ref.astype(np.int16)).max())


def specs(cfg: BenchConfig) -> list[TableSpec]:
    n = cfg.frames
    ref_cache: dict[str, np.ndarray] = {}

    def reference() -> np.ndarray:
        if "ref" not in ref_cache:
            frames, prev = pong_frames(n, cfg.seed)
            ref_cache["ref"] = np.stack([bl.chapter_process(bl.chapter_maxpool(p, f)) for f, p in zip(frames, prev)])
        return ref_cache["ref"]

    def chapter_case():
        frames, prev = pong_frames(n, cfg.seed)
        out = np.empty((n, 84, 84), np.uint8)

        def run():
            for i in range(n):
                out[i] = bl.chapter_process(bl.chapter_maxpool(prev[i], frames[i]))
        return run

    def case_with_check(name, role, make_run, note=""):
        case = Case(name, None, items=n, role=role, note=note)

        def setup():
            frames, prev = pong_frames(n, cfg.seed)
            run, out = make_run(frames, prev)
            run()
            case.extra["max diff vs book chapter"] = _max_diff(np.asarray(out), reference())
            return run
        case.setup = setup
        return case

    def opencv_run(frames, prev):
        out = np.empty((n, 84, 84), np.uint8)

        def run():
            for i in range(n):
                out[i] = bl.opencv_uint8_process(frames[i], prev[i])
        return run, out

    cases = [
        Case("the book chapter's float32 pipeline (np.max + float luma + cv2 INTER_AREA)", chapter_case, items=n,
             role="baseline"),
        case_with_check("OpenCV uint8 (np.maximum + cvtColor + INTER_AREA)", "alternative", opencv_run),
    ]
    cases[0].extra["max diff vs book chapter"] = 0

    available = pre.backends()

    def kernel(backend, threads=None):
        def make(frames, prev):
            out = np.empty((n, 84, 84), np.uint8)
            kw = {} if threads is None else {"threads": threads}

            def run():
                pre.process_batch(frames, prev, out=out, backend=backend, **kw)
            return run, out
        return make

    cores = os.cpu_count() or 1
    for label, backend, threads in (("fastdqn numba", "numba", None), ("fastdqn C++ 1 thread", "cpp", 1),
                                    (f"fastdqn C++ all threads ({cores})", "cpp", None)):
        if backend not in available:
            cases.append(Case.unavailable(label, f"backend {backend!r} not built (backends: {available})"))
        else:
            cases.append(case_with_check(label, "fastdqn", kernel(backend, threads)))
    cases.append(_cuda_case(cfg, n, reference))
    return [TableSpec(
        id="preprocess", group=GROUP, title="Preprocessing: max-pool + grey + resize 84x84 (crop layout)",
        unit="frame", cases=cases, extra_columns=["max diff vs book chapter"],
        notes=[f"{n} consecutive real Pong frames (ale-py), each max-pooled with its predecessor; "
               "uint8 [84,84] out into a preallocated array."],
    )]


def _cuda_case(cfg: BenchConfig, n: int, reference) -> Case:
    label = "fastdqn CUDA (frames already on the GPU)"
    if not torch.cuda.is_available():
        return Case.unavailable(label, "no CUDA device")
    if not frames_cuda.available():
        return Case.unavailable(label, frames_cuda.unavailable_reason())
    case = Case(label, None, items=n, role="fastdqn")

    def setup():
        frames, prev = pong_frames(n, cfg.seed)
        f = torch.from_numpy(frames).cuda()
        p = torch.from_numpy(prev).cuda()

        def run():
            out = frames_cuda.process_batch_cuda(f, p)
            torch.cuda.synchronize()
            return out
        case.extra["max diff vs book chapter"] = _max_diff(run().cpu().numpy(), reference())
        return run
    case.setup = setup
    return case
