"""Ape-X scale-out: agent steps/s into the learner's replay from 1..N Ray actors, against the
same envs stepped by the local Trainer. No learning (replay start is never reached), so the
table measures what the actors deliver: stepping, acting, the transfer and the store.

Rows are timed in windows of whole seconds, interleaved over rounds (local, 1, 2, 4, local,
...), not with the per-call timer: actors run ahead of the learner by design, so the first
chunks of a call come from the queue. Each window first drains it for a quarter of its length.
On a machine with C cores, N actors can run at most ~C-1 times one (the learner takes a core):
on 2 cores the rows stay flat, by design of the hardware, not of the code."""

from __future__ import annotations

import importlib.util
import statistics
import time

from fastdqn.run.config import TrainConfig
from fastdqn.run.trainer import Trainer

from ..config import BenchConfig
from ..model import Table, ValuesSpec

GROUP = "scale"
ENVS_PER_ACTOR, CHUNK_STEPS = 2, 50


def plan(cfg: BenchConfig) -> tuple[tuple[int, ...], float, int]:
    """(actor counts, seconds per window, rounds)."""
    return {"tiny": ((1,), 0.3, 1), "quick": ((1,), 1.0, 1)}.get(cfg.mode, ((1, 2, 4), 8.0, 3))


def specs(cfg: BenchConfig) -> list[ValuesSpec]:
    return [ValuesSpec("scale", GROUP, "Ape-X scale-out: agent steps/s into the replay vs Ray actors",
                       lambda: build(cfg))]


LEARN_RATIO = 1 / 8  # the learning rows: one update per 8 agent steps, after train_fill (at most 1,000) steps


def build(cfg: BenchConfig) -> Table:
    counts, window, rounds = plan(cfg)
    k, learn_start = ENVS_PER_ACTOR, min(cfg.train_fill, 1_000)
    common = dict(device="cpu", seed=cfg.seed, replay_size=max(10_000, 8 * k * max(counts)), eps_start=0.01,
                  eps_final=0.01, progress=False, tensorboard=False, torch_threads=1, batch_size=cfg.batch_size)
    modes = {"no learning": dict(replay_start=10**9),
             f"learning, 1 update per {round(1 / LEARN_RATIO)} agent steps": dict(replay_start=learn_start,
                                                                                  replay_ratio=LEARN_RATIO)}
    if cfg.mode == "quick":  # its two minutes: the actors' delivery alone
        modes = dict(list(modes.items())[:1])
    no_ray = None if importlib.util.find_spec("ray") else 'needs the ray extra (pip install "fastdqn[ray]")'
    rows: list[tuple[str, object]] = []  # (name, trainer); the first of each mode is its baseline
    started = False
    try:
        if no_ray is None:
            started = _cluster(2 * sum(counts))
        for mode, extra in modes.items():
            rows.append((f"{mode}: local Trainer.step, {k} envs (baseline)",
                         _ready(Trainer(TrainConfig(**common, **extra, num_envs=k, env_backend="ale", num_workers=1),
                                        log=False))))
            if no_ray is None:
                for n in counts:
                    tc = TrainConfig(**common, **extra, ray=True, actors=n, envs_per_actor=k, chunk_steps=CHUNK_STEPS)
                    name = f"{mode}: --ray Trainer.step, {n} actor(s) x {k} envs"
                    rows.append((name, _ready(Trainer(tc, log=False))))
        runs: list[list[tuple]] = [[] for _ in rows]
        for _ in range(rounds):
            for i, (_, tr) in enumerate(rows):
                runs[i].append(_steps_per_s(tr, window))
    finally:
        for _, tr in rows:
            tr.close()
        if started:
            import ray

            ray.shutdown()
    cells, base = [], None
    for (name, _), r in zip(rows, runs):
        rate, wait, idle = ([x[j] for x in r] for j in range(3))
        base = statistics.median(rate) if "baseline" in name else base
        cells.append([name, statistics.median(rate), f"{statistics.median(rate) / base:.2f}x",
                      f"{min(rate):,.0f} – {max(rate):,.0f}", _pct(wait), _pct(idle)])
    if no_ray:
        cells += [[f"--ray Trainer.step, {n} actor(s) x {k} envs", None, "—", "—", "—", no_ray] for n in counts]
    return Table(id="scale", group=GROUP, title="Ape-X scale-out: agent steps/s into the replay vs Ray actors",
                 kind="values", columns=["path", "agent steps/s (median)", "vs local", "range", "learner waited",
                                         "actors idle"],
                 formats=["text", "int", "text", "text", "text", "text"], cells=cells,
                 notes=[f"Pong, 'ale' envs, CPU acting and learning with 1 torch thread per process, {k} envs per "
                        f"actor, chunks of {CHUNK_STEPS} agent steps, batch {cfg.batch_size}; learning rows after "
                        f"{learn_start:,} agent steps of replay; {rounds} interleaved round(s) of {window:g} s "
                        f"windows; a private local Ray cluster (every row's actors exist at once, idle but for the "
                        "row being timed). 'vs local': against the local Trainer of the same mode."])


def _ready(tr):
    """Step ``tr`` until its learner learns (if it is to): the rows time the steady state."""
    while tr.state.replay_frames < tr.cfg.replay_start < 10**9:
        tr.step()
    return tr


def _steps_per_s(tr, window: float) -> tuple[float, float | None, float | None]:
    """(agent steps/s stored by ``tr`` over ``window`` s after draining for window/4, and for Ray
    the learner's share of it spent waiting and the actors' share of theirs spent idle)."""
    end = time.perf_counter() + window / 4
    while time.perf_counter() < end:
        tr.step()
    f0, t0, c0 = tr.frame, time.perf_counter(), _counters(tr)
    while time.perf_counter() - t0 < window:
        tr.step()
    wall, c1 = time.perf_counter() - t0, _counters(tr)
    if c0 is None:
        return (tr.frame - f0) / wall, None, None
    wait, idle, busy = (b - a for a, b in zip(c0, c1))
    return (tr.frame - f0) / wall, wait / wall, idle / max(idle + busy, 1e-9)


def _counters(tr) -> tuple[float, float, float] | None:
    pool = getattr(tr.collector, "pool", None)  # a Ray run's ActorPool; the local collectors have none
    return None if pool is None else pool.waits()


def _pct(values: list) -> str:
    return "—" if values[0] is None else f"{statistics.median(values):.0%}"


def _cluster(num_cpus: int) -> bool:
    """One private cluster for every row (connect() then reuses it); True if started here."""
    import ray

    from fastdqn.run.ray_cluster import start_local

    if ray.is_initialized():
        return False
    start_local(num_cpus)
    return True
