"""GPU micro-benchmarks for issue 4, each timed side by side with its CPU/eager baseline.

    python bench/gpu_micro.py --out micro.json [--quick] [--no-compile]

1. preprocess: CUDA kernel (device-resident frames; and with the raw-frame upload) vs the C++
   kernel (fastdqn._core, all threads), plus bit-exactness on real Pong frames.
2. replay sample of B=32 5-frame windows: GPU gather (fastdqn.replay.gather.gather_windows) vs a pinned
   CPU gather + one async H2D copy (the CPU buffer's path), and vs torch advanced indexing.
3. update step (Nature DQN, batch 32): eager vs torch.compile vs compile(reduce-overhead) vs a
   CUDA graph (fastdqn.learn.graphed).
Every section records its error instead of stopping the others. Not a pass/fail test. The JSON is
rewritten (atomically) after every row, so a time limit that kills the run keeps the rows so far.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback

import numpy as np
import torch

from fastdqn.atomic import atomic_write


def wall(fn, iters: int, sync: bool) -> float:
    """Seconds per call of fn, after 3 warm-up calls; syncs the GPU around the timed loop."""
    for _ in range(3):
        fn()
    if sync:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if sync:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def bench_preprocess(quick: bool, res: dict, flush) -> None:
    from fastdqn.bench.inputs import pong_frames
    from fastdqn.frames import cuda as fcuda
    from fastdqn.frames import preprocess

    res["backends"] = preprocess.backends()
    f, p = pong_frames(256)
    for layout in ("crop", "full"):
        got = fcuda.process_batch_cuda(torch.from_numpy(f).cuda(), torch.from_numpy(p).cuda(), layout=layout)
        want = preprocess.process_batch(f, p, layout=layout, backend=preprocess.default_backend())
        diff = np.abs(got.cpu().numpy().astype(int) - want.astype(int))
        res[f"parity_{layout}"] = {"reference": preprocess.default_backend(), "pixels": int(diff.size),
                                   "mismatched": int((diff > 0).sum()), "max_abs_diff": int(diff.max())}
    res["cpu_threads"] = torch.get_num_threads()
    rows = res["throughput"] = []
    flush()
    for n in (16, 64) if quick else (16, 64, 256, 1024):
        reps = -(-n // 256)
        fh, ph = np.concatenate([f] * reps)[:n], np.concatenate([p] * reps)[:n]
        fd, pd = torch.from_numpy(fh).cuda(), torch.from_numpy(ph).cuda()
        fpin, ppin = torch.from_numpy(fh).pin_memory(), torch.from_numpy(ph).pin_memory()
        out = torch.empty((n, 84, 84), dtype=torch.uint8, device="cuda")
        host_out = np.empty((n, 84, 84), np.uint8)
        iters = max(20, 20000 // n)

        def cuda_resident():
            fcuda.process_batch_cuda(fd, pd, out=out)

        def cuda_upload():
            fd.copy_(fpin, non_blocking=True)
            pd.copy_(ppin, non_blocking=True)
            fcuda.process_batch_cuda(fd, pd, out=out)

        def cpu_kernel():
            preprocess.process_batch(fh, ph, out=host_out)

        def cpu_kernel_upload():
            preprocess.process_batch(fh, ph, out=host_out)
            out.copy_(torch.from_numpy(host_out), non_blocking=False)

        t = {"cuda_resident": wall(cuda_resident, iters, True),
             "cuda_with_raw_upload": wall(cuda_upload, iters, True),
             "cpu_kernel": wall(cpu_kernel, max(5, iters // 10), False),
             "cpu_kernel_with_upload": wall(cpu_kernel_upload, max(5, iters // 10), True)}
        row = {"n": n, **{f"{k}_fps": n / v for k, v in t.items()}}
        row["speedup_resident_vs_cpu"] = t["cpu_kernel"] / t["cuda_resident"]
        row["speedup_upload_vs_cpu_upload"] = t["cpu_kernel_with_upload"] / t["cuda_with_raw_upload"]
        rows.append(row)
        flush()


def bench_replay(quick: bool, res: dict, flush) -> None:
    from fastdqn.replay.gather import gather_windows

    res["note"] = "cpu path: index_select into pinned memory + one H2D copy"
    rows = res["kernel_rows"] = []
    g = torch.Generator().manual_seed(0)
    for cap in (10_000,) if quick else (10_000, 100_000):
        host = torch.randint(0, 256, (cap, 84, 84), dtype=torch.uint8, generator=g)
        dev = host.cuda()
        b = 32
        idx_host = torch.randint(-1, cap, (b, 5), generator=g)
        idx_dev = idx_host.cuda()
        pinned = torch.empty((b, 5, 84, 84), dtype=torch.uint8).pin_memory()
        out = torch.empty((b, 5, 84, 84), dtype=torch.uint8, device="cuda")
        clamp = idx_host.clamp(min=0)
        mask = (idx_host >= 0)[..., None, None].to(torch.uint8)
        copied = torch.cuda.Event()

        def cpu_gather_copy():  # what the CPU buffer does: gather into pinned memory, one H2D copy
            copied.synchronize()  # the last call's async copy may still be reading `pinned`
            torch.index_select(host, 0, clamp.view(-1), out=pinned.view(-1, 84, 84))
            pinned.mul_(mask)
            out.copy_(pinned, non_blocking=True)
            copied.record()

        def gpu_gather():
            gather_windows(dev, idx_dev, out=out, check=False)

        def torch_index():
            torch.mul(dev[idx_dev.clamp(min=0)], (idx_dev >= 0)[..., None, None].to(torch.uint8), out=out)

        t = {"cpu_gather_plus_h2d": wall(cpu_gather_copy, 300, True),
             "gpu_gather_kernel": wall(gpu_gather, 2000, True),
             "gpu_torch_indexing": wall(torch_index, 2000, True)}
        rows.append({"capacity": cap, "batch": b, **{f"{k}_us": v * 1e6 for k, v in t.items()},
                     "speedup_kernel_vs_cpu": t["cpu_gather_plus_h2d"] / t["gpu_gather_kernel"]})
        flush()
    try:
        res["replay_buffer"] = bench_replay_buffer(quick)
    except Exception as e:  # noqa: BLE001
        res["replay_buffer"] = {"error": f"{type(e).__name__}: {e}"}


def bench_replay_buffer(quick: bool) -> dict:
    """fastdqn.ReplayBuffer end to end: host buffer sample + to_device vs device-resident sample."""
    from fastdqn import ReplayBuffer
    from fastdqn.learn.learner import to_device

    cap, b = 10_000, 32
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(64, 84, 84), dtype=np.uint8)
    res = {}
    dev = torch.device("cuda")
    for name, device in (("host_sample_plus_h2d", None), ("device_sample", "cuda")):
        buf = ReplayBuffer(cap, seed=0, device=device)
        buf.start(frames[0])
        for t in range(cap + 100):
            end = t % 900 == 899
            buf.add(int(t % 6), 0.0, frames[t % 64], end)
            if end:
                buf.start(frames[(t + 1) % 64])

        def step():
            return to_device(buf.sample(b), dev)

        res[name + "_us"] = wall(step, 200 if quick else 1000, True) * 1e6
    res["speedup_device_vs_host"] = res["host_sample_plus_h2d_us"] / res["device_sample_us"]
    return res


def bench_update(quick: bool, compile_modes: bool, res: dict, flush) -> None:
    from fastdqn.learn.graphed import make_graphed_update
    from fastdqn.learn.learner import Learner
    from fastdqn.learn.model import QNetSpec

    b = 32
    g = torch.Generator(device="cuda").manual_seed(0)
    window = torch.randint(0, 256, (b, 5, 84, 84), dtype=torch.uint8, device="cuda", generator=g)
    batch = (window[:, :4], torch.randint(0, 6, (b,), device="cuda", generator=g),
             torch.randn(b, device="cuda", generator=g), window[:, 1:],
             (torch.rand(b, device="cuda", generator=g) < 0.05).float())
    iters = 200 if quick else 1000

    def run(name, make):
        try:
            t0 = time.perf_counter()
            step = make()
            step(*batch)
            torch.cuda.synchronize()
            setup = time.perf_counter() - t0
            res[name] = {"ms_per_update": wall(lambda: step(*batch), iters, True) * 1e3, "setup_s": setup}
        except Exception as e:  # noqa: BLE001 - report and go on with the other modes
            res[name] = {"error": f"{type(e).__name__}: {e}"}
        flush()

    run("eager", lambda: Learner(QNetSpec(6), device="cuda", compile=False)._update)
    if compile_modes:
        run("compile_default", lambda: torch.compile(Learner(QNetSpec(6), device="cuda", compile=False)._update))
        run("compile_reduce_overhead",
            lambda: torch.compile(Learner(QNetSpec(6), device="cuda", compile=False)._update, mode="reduce-overhead"))

    def graphed():
        lr = Learner(QNetSpec(6), device="cuda", compile=False)
        static = tuple(t.clone() for t in batch)
        return make_graphed_update(lr._update, static, modules=[lr.online], optimizers=[lr.optimizer])

    run("cuda_graph", graphed)
    base = res.get("eager", {}).get("ms_per_update")
    for v in res.values():
        if base and "ms_per_update" in v:
            v["speedup_vs_eager"] = base / v["ms_per_update"]


def bench_learn_path(quick: bool, res: dict, flush, device: str = "cuda") -> None:
    """The Trainer's update path, sampling included, per update: a fresh sample copied into the
    graph's static inputs (before), a sample into a batch slot the graph reads in place, and K of
    them as one graph replay of K updates (--graph-updates K); prioritized 3-step, device replay."""
    import numpy as np

    from fastdqn import ReplayBuffer
    from fastdqn.learn.learner import Learner
    from fastdqn.learn.model import QNetSpec

    cuda, b, envs = device == "cuda", 32, 8
    buf = ReplayBuffer(20_000, num_envs=envs, seed=0, device=device, prioritized=True, n_step=3)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (16, envs, 84, 84), dtype=np.uint8)
    buf.start_many(frames[0])
    for t in range(1_000 if cuda else 40):
        buf.add_many(rng.integers(0, 6, envs), np.zeros(envs, np.float32), frames[t % 16], np.zeros(envs, bool))
    iters = (100 if quick else 500) if cuda else 2

    def learner():
        return Learner(QNetSpec(6), device=device, graph=cuda, compile=False, double=True)

    def per_update(k: int, fresh: bool):
        lrn, slots = learner(), [buf.batch_slot(b, device) for _ in range(k)]

        def run():
            batches = [buf.sample(b, 0.4) if fresh else buf.sample(b, 0.4, out=s) for s in slots]
            _, priorities = lrn.update_many(batches, in_place=not fresh)
            buf.update_priorities(torch.cat([x.indices for x in batches]), torch.cat(priorities))
        return wall(run, max(1, iters // k), cuda) / k

    for name, k, fresh in (("fresh_sample_copied_into_the_graph", 1, True), ("slot_k1", 1, False),
                           ("slot_k4", 4, False), ("slot_k8", 8, False)):
        try:
            res[name] = {"us_per_update": per_update(k, fresh) * 1e6}
        except Exception as e:  # noqa: BLE001 - report and go on with the other rows
            res[name] = {"error": f"{type(e).__name__}: {e}"}
        flush()


def write_json(path: str, data: dict) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2).encode()), what="--out")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_micro.json")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and iterations")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile modes (slow to build)")
    ap.add_argument("--dry-run", action="store_true",
                    help="without CUDA: import every module the sections use and write the JSON (gpu_pong.sh DRY_RUN=1)")
    args = ap.parse_args(argv)
    if args.dry_run and not torch.cuda.is_available():
        from fastdqn import ReplayBuffer  # noqa: F401  (the sections' imports, so a rename fails here)
        from fastdqn.bench.inputs import pong_frames  # noqa: F401
        from fastdqn.frames import cuda, preprocess  # noqa: F401
        from fastdqn.learn.graphed import make_graphed_update  # noqa: F401
        from fastdqn.learn.learner import Learner, to_device  # noqa: F401
        from fastdqn.replay.gather import gather_windows  # noqa: F401

        learn: dict = {}
        bench_learn_path(True, learn, lambda: None, device="cpu")  # the one section that runs on a CPU too
        write_json(args.out, {"dry_run": True, "learn_path": learn,
                              "sections": ["preprocess", "replay_sample", "update_step", "learn_path"]})
        return 0
    if not torch.cuda.is_available():
        print("gpu_micro: no CUDA device", file=sys.stderr)
        return 2
    prop = torch.cuda.get_device_properties(0)
    result = {"device": prop.name, "torch": torch.__version__, "cuda": torch.version.cuda,
              "python": platform.python_version()}
    sections = [("preprocess", lambda res: bench_preprocess(args.quick, res, flush)),
                ("replay_sample", lambda res: bench_replay(args.quick, res, flush)),
                ("learn_path", lambda res: bench_learn_path(args.quick, res, flush)),  # before the slowest
                ("update_step", lambda res: bench_update(args.quick, not args.no_compile, res, flush))]

    def flush():
        write_json(args.out, result)

    flush()
    for name, fn in sections:
        t0 = time.perf_counter()
        res = result[name] = {}
        try:
            fn(res)
        except Exception as e:  # noqa: BLE001
            res.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-2000:])
        result[name + "_seconds"] = round(time.perf_counter() - t0, 1)
        flush()
        print(f"[gpu_micro] {name}: {json.dumps(res)[:1500]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
