"""Run directory output: config.json, metrics.jsonl, TensorBoard events, reward-curve PNG,
and the live console line."""

from __future__ import annotations

import json
import os
import time
import warnings

from fastdqn.atomic import atomic_write, check_output_path, make_dirs


def default_out_dir(env_id: str) -> str:
    return os.path.join("runs", f"{env_id}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_new_run_dir(out: str) -> None:
    """Before any env starts: ``out`` can become a run directory, and a new run must not overwrite
    another run's checkpoints or mix into its metrics."""
    check_output_path(out, "out", directory=True)
    found = [f for f in ("last.pt", "best.pt", "metrics.jsonl") if os.path.exists(os.path.join(out, f))]
    if found:
        raise ValueError(f"out: expected a new or empty run directory, got {out!r} holding a run ({', '.join(found)}); "
                         f"continue it with --resume {out} or choose another --out")


class RunLog:
    """One finished episode -> one metrics.jsonl line + TensorBoard scalars.

    TensorBoard keys: the book chapter's (reward, reward_100, epsilon, speed) and CleanRL's
    (charts/episodic_return, charts/SPS, losses/td_loss, charts/epsilon); Ray runs add ray/*
    (fastdqn.run.ray_collector).
    """

    def __init__(self, out_dir: str, config: dict, *, tensorboard: bool = True, resume_frame: int | None = None,
                 tracker=None, reward_curve: bool = True):
        """``resume_frame``: continue a run whose last.pt is at that frame; episodes logged after
        it (by a run that was killed before its next checkpoint) are dropped, as they will be
        played again: from metrics.jsonl, and hidden in TensorBoard by ``purge_step``."""
        make_dirs(out_dir, "out")
        self.out_dir, self.reward_curve = out_dir, reward_curve
        self._lock = _lock_run_dir(out_dir)  # before the first write: two runs must not share a directory
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        jsonl = os.path.join(out_dir, "metrics.jsonl")
        evals = os.path.join(out_dir, "eval.jsonl")
        self.records: list[dict] = []
        if resume_frame is not None:  # episodes and evaluations after last.pt are played again
            self.records = _keep_upto(jsonl, resume_frame)
            _keep_upto(evals, resume_frame)
        self._jsonl = open(jsonl, "a", buffering=1)
        self._evals_path = evals
        self._evals = None
        self.tracker = tracker  # --track: the same scalars to W&B (fastdqn.run.tracking)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_frame is None else resume_frame + 1
            self._tb = SummaryWriter(log_dir=out_dir, purge_step=purge)

    def episode(self, rec: dict) -> None:
        self.records.append(rec)
        self._jsonl.write(json.dumps(rec) + "\n")
        scalars = {"reward": rec["reward"], "reward_100": rec["reward_100"], "epsilon": rec["epsilon"],
                   "speed": rec["fps"], "charts/episodic_return": rec["reward"],
                   "charts/episodic_length": rec["length"], "charts/epsilon": rec["epsilon"], "charts/SPS": rec["fps"]}
        if rec["loss"] is not None:
            scalars["losses/td_loss"] = rec["loss"]
        for key in ("learner_wait", "actor_idle", "restarts", "weights_lag", "reward_100_actor"):  # Ray runs
            if rec.get(key) is not None:  # reward_100_actor: None until the lowest-epsilon actor's first game
                scalars[f"ray/{key}"] = rec[key]
        self._scalars(scalars, rec["frame"])

    def _scalars(self, scalars: dict, step: int) -> None:
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)
        if self.tracker is not None:
            self.tracker.log(scalars, step)

    def evaluation(self, rec: dict) -> None:
        """One --eval-every evaluation -> one eval.jsonl line + eval/episodic_return (its mean)."""
        if self._evals is None:
            self._evals = open(self._evals_path, "a", buffering=1)
        self._evals.write(json.dumps(rec) + "\n")
        self._scalars({"eval/episodic_return": rec["mean"], "eval/episodic_length": rec["mean_length"]}, rec["frame"])

    def close(self) -> str | None:
        """Flush everything; write reward_curve.png (returns its path, None without episodes or
        with ``reward_curve`` off)."""
        self._jsonl.close()
        if self._evals is not None:
            self._evals.close()
        if self._tb is not None:
            self._tb.close()
        try:
            if not self.reward_curve:
                return None
            return plot_rewards(self.records, os.path.join(self.out_dir, "reward_curve.png"))
        finally:
            if self.tracker is not None:
                self.tracker.finish()
            self._lock.close()  # releases the flock


LOCK_FILE = ".fastdqn.lock"


def _lock_run_dir(out_dir: str):
    """An exclusive flock on out_dir/.fastdqn.lock, held until close (the kernel drops it if the
    process dies, so a killed run never leaves the directory locked). The file holds the pid."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return open(os.devnull, "w")
    f = open(os.path.join(out_dir, LOCK_FILE), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise ValueError(f"out: expected a run directory no other fastdqn process is using, got {out_dir!r} "
                         f"in use by pid {pid}") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _keep_upto(path: str, frame: int) -> list[dict]:
    """Rewrite a JSON-lines log to the records at or before ``frame`` (crash-safe); return them."""
    kept = _records_upto(path, frame)
    atomic_write(path, lambda f: f.writelines((json.dumps(r) + "\n").encode() for r in kept), what="metrics")
    return kept


def _records_upto(path: str, frame: int) -> list[dict]:
    if not os.path.isfile(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash
                continue
            if isinstance(rec, dict) and isinstance(rec.get("frame"), int) and rec["frame"] <= frame:
                out.append(rec)
    return out


def plot_rewards(records: list[dict], path: str, bound: float | None = None, *, x: list | None = None,
                 xlabel: str = "agent steps (frames)", title: str | None = None) -> str | None:
    """Episode rewards and their mean of 100 against ``x`` (default: the frames); None (and a
    warning) without records or without matplotlib."""
    if not records:
        return None
    try:
        import matplotlib
    except ImportError:  # GPU boxes installed with --no-deps: keep the run, skip the picture
        warnings.warn("matplotlib is not installed: reward curve not written", RuntimeWarning, stacklevel=2)
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["frame"] for r in records] if x is None else x
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(x, [r["reward"] for r in records], ".", alpha=0.35, label="episode reward")
    ax.plot(x, [r["reward_100"] for r in records], "-", label="mean of last 100")
    if bound is not None:
        ax.axhline(bound, color="grey", ls="--", lw=1, label=f"bound {bound:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("reward")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class Progress:
    """A live rich line (frames, episodes, reward_100, epsilon, f/s), at most ~4 refreshes/s."""

    def __init__(self, total: int | None, enabled: bool = True):
        self.enabled = enabled
        self._last = 0.0
        if not enabled:
            return
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

        self._p = RichProgress(
            TextColumn("[bold]{task.completed:>9,.0f}[/] frames"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            refresh_per_second=4,
            transient=False,
        )
        self._task = self._p.add_task("train", total=total, info="filling replay")
        self._p.start()

    def update(self, frame: int, info: str | None = None, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self._last > 0.25:
            self._last = now
            kw = {"info": info} if info is not None else {}
            self._p.update(self._task, completed=frame, **kw)

    def print(self, msg: str) -> None:
        if self.enabled:
            self._p.console.print(msg)
        else:
            print(msg, flush=True)

    def close(self) -> None:
        if self.enabled:
            self.enabled = False
            self._p.stop()
