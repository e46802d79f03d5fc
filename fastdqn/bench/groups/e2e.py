"""``fastdqn train`` end to end, as a user runs it, against the same work by the tools a user
would pick instead, each in its own process on the same threads.

Full mode: every command runs twice, short and long; its rate is (long - short agent steps) /
(long - short seconds), so interpreter start, imports, env creation and the final save cancel
out. --quick and --tiny run each command once, long, and take the rate it reports for its own
loop (``fastdqn train``'s f/s; the alternatives' ``loop_rate``): one round of long-minus-short
runs a few seconds long is mostly startup noise. fastdqn runs
draw no reward_curve.png (``--no-reward-curve``): only a run that finished a game draws one, so
the long run alone would pay matplotlib's second. Commands
are interleaved over rounds (A short, A long, B short, ... then again), and each row's ratio is
the median of its per-round ratios to the baseline of its table.
"""

from __future__ import annotations

import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from ..config import BenchConfig
from ..model import Table, ValuesSpec

GROUP = "e2e"
PONG_ENVS, LEARN_ENVS = 8, 4
NO_SB3 = 'needs stable-baselines3 (pip install "fastdqn[bench]")'


def plan(cfg: BenchConfig) -> dict:
    """Agent steps (short, long) per table, learning start and rounds for this bench mode."""
    full = dict(env=(2_000, 40_000), learn=(400, 2_000), cartpole=(10_000, 50_000), start=1_000, rounds=3,
                ratios=(1.0, 0.25))
    return {"tiny": full | dict(env=(64, 128), learn=(40, 80), cartpole=(1_100, 1_400), start=200, rounds=1,
                                ratios=(1.0,)),
            "quick": full | dict(env=(400, 8_000), learn=(16, 160), cartpole=(1_100, 6_100), start=200, rounds=1,
                                 ratios=(1.0,))}.get(cfg.mode, full)


def specs(cfg: BenchConfig) -> list[ValuesSpec]:
    return [ValuesSpec("e2e-env", GROUP, "End to end, env only: fastdqn train vs AtariVectorEnv, agent steps/s",
                       lambda: env_only(cfg)),
            ValuesSpec("e2e-learn", GROUP, "End to end, learning: fastdqn train vs SB3 and a CleanRL-style loop, "
                       "agent steps/s", lambda: learning(cfg)),
            ValuesSpec("e2e-cartpole", GROUP, "End to end, CartPole preset: fastdqn train vs SB3's DQN, agent steps/s",
                       lambda: cartpole(cfg))]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _train(*flags: str):
    """``fastdqn train`` with these flags, for ``steps`` agent steps, in a fresh run directory."""
    def argv(steps: int, out: str) -> list[str]:
        return [sys.executable, "-m", "fastdqn.cli", "train", *flags, "--frames", str(steps), "--out", out,
                "--no-progress", "--no-tensorboard", "--no-reward-curve", "--device", "cpu", "--seed", "0"]
    return argv


def _alternative(name: str, *flags: str):
    def argv(steps: int, out: str) -> list[str]:
        return [sys.executable, "-m", "fastdqn.bench.alternatives", name, "--steps", str(steps), *flags]
    return argv


def _run(argv: list[str]) -> tuple[float, str]:
    """(wall seconds, stdout) of one command."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:5])}... failed ({done.returncode}): "
                           f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    return time.perf_counter() - t0, done.stdout


def _loop_rate(stdout: str) -> float:
    """The rate a command reports for its own loop: ``loop_rate STEPS SECONDS`` (the alternatives)
    or fastdqn train's summary line (``...; N f/s; run dir ...``)."""
    found = re.search(r"^loop_rate (\d+) ([\d.]+)$", stdout, re.M)
    if found:
        return int(found[1]) / max(float(found[2]), 1e-9)
    found = re.search(r"; (\d+) f/s; run dir ", stdout)
    if found is None:
        raise RuntimeError(f"no loop rate in the command's output: {stdout.strip().splitlines()[-1:]}")
    return float(found[1])


def _compare(rows: list[tuple[str, object, str | None]], steps: tuple[int, int], rounds: int,
             self_timed: bool = False) -> list[list]:
    """Cells [name, agent steps/s, vs baseline, range] for rows (name, argv maker, why skipped);
    the first row is the baseline. A round whose long run was not slower than its short one
    (startup noise larger than the difference) gives no rate. ``self_timed``: one long run per
    round, at the rate it reports for its own loop."""
    short, long = steps
    rates: list[list[float | None]] = [[] for _ in rows]
    with tempfile.TemporaryDirectory(prefix="fastdqn-e2e-") as tmp:
        for r in range(rounds):
            for i, (_, make, skip) in enumerate(rows):
                if skip is not None:
                    continue
                if self_timed:
                    rates[i].append(_loop_rate(_run(make(long, os.path.join(tmp, f"{i}-{r}")))[1]))
                    continue
                t = [_run(make(n, os.path.join(tmp, f"{i}-{r}-{n}")))[0] for n in (short, long)]
                rates[i].append((long - short) / (t[1] - t[0]) if t[1] > t[0] else None)
    cells = []
    for (name, _, skip), rate in zip(rows, rates):
        ratios = [a / b for a, b in zip(rate, rates[0]) if a and b]
        good = [x for x in rate if x]
        if skip is not None or not good:
            cells.append([name, None, "—", skip or "startup noise exceeded the run (use a longer mode)"])
            continue
        cells.append([name, statistics.median(good), f"{statistics.median(ratios):.2f}x" if ratios else "—",
                      f"{min(good):,.0f} – {max(good):,.0f}"])
    return cells


def _self_timed(cfg: BenchConfig) -> bool:
    return cfg.mode != "full"


def _how(cfg: BenchConfig, short: int, long: int) -> str:
    """How the table's rates were taken, for its note."""
    if _self_timed(cfg):
        return f"agent steps {long:,}, one run each, at the rate each reports for its own loop (after setup)"
    return f"agent steps {short:,} and {long:,}, long minus short"


def _table(tid: str, title: str, cells: list[list], notes: list[str]) -> Table:
    return Table(id=tid, group=GROUP, title=title, kind="values",
                 columns=["command", "agent steps/s (median)", "vs baseline", "range or why not run"],
                 formats=["text", "int", "text", "text"], cells=cells, notes=notes)


def env_only(cfg: BenchConfig) -> Table:
    p, cores, n = plan(cfg), _cores(), PONG_ENVS if cfg.mode != "tiny" else 2
    eps1 = ["--env", "PongNoFrameskip-v4", "--num-envs", str(n), "--eps-start", "1", "--eps-final", "1",
            "--replay-start", "1000000000", "--replay-size", "20000"]
    threads = min(n, cores)
    rows = [(f"AtariVectorEnv plain loop, {threads} threads, random actions (baseline)",
             _alternative("atari-vector", "--envs", str(n), "--threads", str(threads)), None),
            ("fastdqn train (default threads)", _train(*eps1), None),
            ("fastdqn train --pipeline (two halves of the envs in turn)", _train(*eps1, "--pipeline"), None),
            ("fastdqn train --pool grey (AtariVectorEnv's own order)", _train(*eps1, "--pool", "grey"), None)]
    if cfg.mode == "full":  # the other modes keep the two defaults
        rows += [(f"fastdqn train --num-workers {w}", _train(*eps1, "--num-workers", str(w)), None)
                 for w in sorted({1, threads})]
        rows += [(f"AtariVectorEnv making only the raw {what} fastdqn takes (the ceiling of {path})",
                  _alternative("atari-vector", "--envs", str(n), "--threads", str(threads), "--screens", screens), None)
                 for screens, what, path in (("rgb", "RGB screens", "the default"), ("grey", "grey screens", "--pool grey"))]
    return _table("e2e-env", "End to end, env only: fastdqn train vs AtariVectorEnv, agent steps/s",
                  _compare(rows, p["env"], p["rounds"], _self_timed(cfg)),
                  [f"Pong, {n} envs, epsilon 1, no learning (replay start never reached), 84x84 frames into "
                   f"fastdqn's replay; AtariVectorEnv makes 84x84 grey frames and stores nothing. "
                   f"{_how(cfg, *p['env'])}; {p['rounds']} interleaved round(s)."])


def learning(cfg: BenchConfig) -> Table:
    p, n = plan(cfg), LEARN_ENVS
    sb3 = None if importlib.util.find_spec("stable_baselines3") else NO_SB3
    short, long = (p["start"] + s for s in p["learn"])
    rows = []
    labels = {1.0: "the book chapter's replay ratio 1", 0.25: "Nature's one update per 4 agent steps"}
    for ratio, label in ((r, labels[r]) for r in p["ratios"]):
        common = ["--envs", str(n), "--ratio", str(ratio), "--start", str(p["start"])]
        fast = ["--env", "PongNoFrameskip-v4", "--num-envs", str(n), "--replay-ratio", str(ratio),
                "--replay-start", str(p["start"]), "--eps-decay-frames", "100000"]
        rows += [(f"{label}: fastdqn train (baseline)" if ratio == 1 else f"{label}: fastdqn train",
                  _train(*fast), None),
                 (f"{label}: SB3 DQN", _alternative("sb3", *common), sb3)]
        if cfg.mode == "full":  # the other modes keep one alternative
            rows.append((f"{label}: CleanRL-style loop", _alternative("cleanrl", *common), sb3))
    return _table("e2e-learn", "End to end, learning: fastdqn train vs SB3 and a CleanRL-style loop, agent steps/s",
                  _compare(rows, (short, long), p["rounds"], _self_timed(cfg)),
                  [f"Pong on the CPU, {n} envs, batch 32, replay 10,000, learning from agent step {p['start']:,}; "
                   f"{_how(cfg, short, long)}; torch's "
                   "default threads in every process. 'vs baseline': against fastdqn at replay ratio 1."])


def cartpole(cfg: BenchConfig) -> Table:
    p = plan(cfg)
    sb3 = None if importlib.util.find_spec("stable_baselines3") else NO_SB3
    rows = [("SB3 DQN, rl-baselines3-zoo's CartPole hyperparameters (baseline)", _alternative("sb3-cartpole"), sb3),
            ("fastdqn train --preset cartpole", _train("--preset", "cartpole", "--eval-every", "1000000"), None)]
    if sb3 is not None:  # no baseline to divide by: show fastdqn alone
        rows = rows[1:] + rows[:1]
    return _table("e2e-cartpole", "End to end, CartPole preset: fastdqn train vs SB3's DQN, agent steps/s",
                  _compare(rows, p["cartpole"], p["rounds"], _self_timed(cfg)),
                  [f"CartPole-v1, 1 env, lr 2.3e-3, batch 64, 128 updates per 256 agent steps from step 1,000; "
                   f"{_how(cfg, *p['cartpole'])}; no evaluations."])
