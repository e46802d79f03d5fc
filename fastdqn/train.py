"""The DQN training loop (the seeds' algorithm) and its Python API: ``train(TrainConfig(...))``."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from fastdqn.atomic import check_output_path
from fastdqn.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401 (re-exported)
from fastdqn.envs import EnvSpec
from fastdqn.learner import LOSSES, Learner, epsilon_at, resolve_device
from fastdqn import resume as resume_mod
from fastdqn.runlog import Progress, RunLog
from fastdqn.vecenv import WorkerDied


@dataclass
class TrainConfig:
    """Every knob of a run. Defaults are the seeds' Pong preset."""

    env_id: str = "PongNoFrameskip-v4"
    device: str = "auto"
    seed: int = 0
    frames: int | None = None  # stop after this many agent steps (None: until solved)
    num_envs: int = 1
    num_workers: int | None = None  # env processes (None: default_workers(num_envs))
    out: str | None = None  # run directory (None: runs/<env>-<time>)
    batch_size: int = 32
    replay_size: int = 10_000
    replay_start: int = 10_000
    lr: float = 1e-4
    gamma: float = 0.99
    sync_target: int = 1_000
    eps_start: float = 1.0
    eps_final: float = 0.01
    eps_decay_frames: int = 150_000
    reward_bound: float | None = 19.0
    loss: str = "mse"
    double: bool = False
    replay_ratio: float = 1.0  # gradient steps per agent step (the seeds: one)
    compile: bool | None = None  # None: on CUDA only
    layout: str = "crop"
    noop_max: int = 0
    fire_reset: bool | None = None  # None: when the game has FIRE
    episodic_life: bool = False
    clip_rewards: bool = False
    checkpoint_every: int = 100_000  # frames between last.pt saves
    save_replay: bool = False  # also save the replay buffer with last.pt (exact --resume)
    torch_threads: int | None = None  # torch intra-op threads (None: torch's default)
    tensorboard: bool = True
    progress: bool = True

    def env_spec(self) -> EnvSpec:
        return EnvSpec(self.env_id, self.layout, 4, self.noop_max, self.fire_reset,
                       self.episodic_life, self.clip_rewards)

    def validate(self) -> None:
        """Raise TypeError (wrong type) or ValueError (bad value) naming the field, what it expects
        and what it got, before anything is built or written. Only reads the config."""
        def bad(name, want, v, error=ValueError):
            raise error(f"{name}: expected {want}, got {v!r}")

        for f in dataclasses.fields(self):  # switches (annotations are strings here): bool, or bool | None = auto
            v = getattr(self, f.name)
            if f.type in ("bool", "bool | None") and not (isinstance(v, bool) or (v is None and f.type != "bool")):
                bad(f.name, "a bool" + ("" if f.type == "bool" else " or None"), v, TypeError)
        ints = (("num_envs", 1), ("batch_size", 1), ("replay_size", 1), ("replay_start", 1), ("sync_target", 1),
                ("checkpoint_every", 1), ("frames", 1), ("eps_decay_frames", 0), ("noop_max", 0),
                ("num_workers", 0), ("torch_threads", 1), ("seed", 0))
        for name, lo in ints:
            v, none_ok = getattr(self, name), name in ("frames", "num_workers", "torch_threads")
            hi = 2**63 if name == "seed" else None  # torch.manual_seed takes 64 bits at most
            want = f"an integer in [{lo}, 2**63)" if hi else f"an integer >= {lo}" + (" or None" if none_ok else "")
            if v is None and none_ok:
                continue
            if not isinstance(v, int) or isinstance(v, bool):
                bad(name, want, v, TypeError)
            if v < lo or (hi is not None and v >= hi):
                bad(name, want, v)
        reals = (("lr", "a finite number > 0", lambda v: v > 0), ("gamma", "a number in [0, 1]", lambda v: 0 <= v <= 1),
                 ("eps_start", "a number in [0, 1]", lambda v: 0 <= v <= 1),
                 ("eps_final", "a number in [0, 1]", lambda v: 0 <= v <= 1),
                 ("replay_ratio", "a finite number > 0", lambda v: v > 0),
                 ("reward_bound", "a finite number or None", lambda v: True))
        for name, want, ok in reals:
            v = getattr(self, name)
            if v is None and name == "reward_bound":
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                bad(name, want, v, TypeError)
            if (isinstance(v, float) and not math.isfinite(v)) or not ok(v):  # NaN and inf are never meant
                bad(name, want, v)
        for name in ("env_id", "loss", "layout"):
            if not isinstance(getattr(self, name), str):
                bad(name, "a str", getattr(self, name), TypeError)
        if self.loss not in LOSSES:
            bad("loss", f"one of {LOSSES}", self.loss)
        if self.layout not in ("crop", "full"):
            bad("layout", "'crop' or 'full'", self.layout)
        if self.out is not None and not isinstance(self.out, (str, os.PathLike)):
            bad("out", "a directory path or None", self.out, TypeError)
        if not isinstance(self.device, (str, torch.device)):
            bad("device", "'auto', 'cpu' or 'cuda'", self.device, TypeError)
        if self.batch_size > self.replay_size:
            raise ValueError(f"batch_size: expected <= replay_size={self.replay_size}, got {self.batch_size}")
        if self.num_envs > self.replay_size // 8:
            raise ValueError(f"num_envs: expected <= replay_size/8={self.replay_size // 8}, got {self.num_envs}")
        if self.num_workers is not None and self.num_workers > self.num_envs:
            raise ValueError(f"num_workers: expected 0..num_envs={self.num_envs}, got {self.num_workers}")
        self.env_spec()  # EnvSpec checks the env id's form (a typo in the game name fails at env creation)
        resolve_device(self.device)


PRESETS = {
    # seeds 000 (book chapter "DQN on Pong")
    "pong": dict(env_id="PongNoFrameskip-v4"),
    # seeds 001/002: FIRE reset, episodic life, clipped rewards, Huber, larger replay
    "breakout": dict(env_id="BreakoutNoFrameskip-v4", noop_max=30, episodic_life=True, clip_rewards=True,
                     loss="huber", batch_size=64, replay_size=65_536, replay_start=16_384,
                     sync_target=10_000, eps_decay_frames=1_000_000, reward_bound=400.0),
}


def _check_fields(overrides: dict, who: str) -> None:
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise TypeError(f"{who}: expected TrainConfig fields as overrides, got unknown {unknown}")


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    _check_fields(overrides, "preset")
    return TrainConfig(**{**PRESETS[name], **overrides})


@dataclass
class TrainResult:
    out_dir: str
    frames: int
    episodes: int
    seconds: float
    solved: bool
    best_reward_100: float | None
    rewards: list = field(default_factory=list)
    interrupted: str | None = None  # "SIGINT"/"SIGTERM" when a signal stopped the run (last.pt saved)


class ObsStack:
    """The acting observation of every env: uint8 [N, stack, 84, 84] on the device, zeros
    before an episode's first frame (as the replay buffer pads)."""

    def __init__(self, first: np.ndarray, stack: int, device: torch.device):
        self.device = device
        self.obs = torch.zeros((first.shape[0], stack, *first.shape[1:]), dtype=torch.uint8, device=device)
        self.obs[:, -1] = torch.from_numpy(first).to(device)

    def push(self, frames: np.ndarray, done: np.ndarray, reset_frames: np.ndarray) -> None:
        new = torch.from_numpy(frames).to(self.device).unsqueeze(1)
        self.obs = torch.cat([self.obs[:, 1:], new], 1)
        if done.any():
            idx = np.flatnonzero(done)
            fresh = torch.from_numpy(reset_frames[idx]).to(self.device)
            self.obs[idx] = 0
            self.obs[idx, -1] = fresh


def default_workers(num_envs: int) -> int:
    """Env worker processes: none for one env or on <= 2 cores (measured: in-process stepping
    beats worker processes there), else one per env up to cores - 1 (a core for the learner)."""
    cores = os.cpu_count() or 1
    return 0 if num_envs == 1 or cores <= 2 else min(num_envs, cores - 1)


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


class Trainer:
    """One run's state. ``step()`` advances every env by one agent step (and learns);
    ``run()`` steps until --frames, solved or a signal, logging episodes. ``train()`` wraps both.
    ``resume`` is a last.pt (see fastdqn.resume) to continue from."""

    def __init__(self, cfg: TrainConfig, *, log: bool = True, resume: dict | None = None):
        from fastdqn import ReplayBuffer
        from fastdqn.vecenv import VectorEnv

        cfg.validate()
        self.cfg, self.out = cfg, cfg.out or default_out_dir(cfg.env_id)
        if log and resume is None:
            check_new_run_dir(self.out)
        device = resolve_device(cfg.device)
        workers = default_workers(cfg.num_envs) if cfg.num_workers is None else cfg.num_workers
        if cfg.torch_threads is not None:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.config_dict = dataclasses.asdict(cfg) | {"out": self.out, "device_resolved": str(device),
                                                      "num_workers": workers}
        self.log = self.prog = None
        self.envs = VectorEnv(cfg.env_spec(), cfg.num_envs, num_workers=workers, seed=cfg.seed)
        try:
            self.learner = Learner(self.envs.n_actions, device=device, lr=cfg.lr, gamma=cfg.gamma,
                                   loss=cfg.loss, double=cfg.double, compile=cfg.compile)
            self.buf = ReplayBuffer(cfg.replay_size, num_envs=cfg.num_envs, seed=cfg.seed)
            self.prog = Progress(cfg.frames, cfg.progress and log)
            first = self.envs.reset()
            self.stack = ObsStack(first, 4, self.learner.device)
            self.frame = self.episodes = 0
            self.returns: deque = deque(maxlen=100)
            self.all_rewards: list = []
            self.best = None
            self.solved = False
            self._credit = 0.0
            self._due = 0  # gradient steps owed: sampled and applied at the start of the next step
            self._replay_frames = 0  # frames in the buffer since it was (re)filled
            self._loss_sum = torch.zeros((), device=self.learner.device)
            self._loss_n = 0
            self._t0 = self._t_win = time.perf_counter()
            self._f_win = self._last_ckpt = 0
            if resume is not None:
                resume_mod.restore_trainer(self, resume)
            else:
                self.buf.start_many(first)
            if log:  # opened last: a rejected resume leaves the run directory untouched
                self.log = RunLog(self.out, self.config_dict, tensorboard=cfg.tensorboard,
                                  resume_frame=self.frame if resume is not None else None)
        except BaseException:
            self.close()
            raise

    def step(self):
        """One agent step of every env, plus the gradient steps the replay ratio asks for.
        Returns the StepResult (views valid until the next step)."""
        cfg, n = self.cfg, self.cfg.num_envs
        eps = epsilon_at(self.frame, cfg.eps_start, cfg.eps_final, cfg.eps_decay_frames)
        self.epsilon = eps
        actions = self.learner.act(self.stack.obs, eps, self.rng)
        # Queue the device work before stepping: on CUDA it runs while the CPU steps the emulators.
        for _ in range(self._due):
            self._loss_sum += self.learner.update(self.buf.sample(cfg.batch_size))
            self._loss_n += 1
        self._due = 0
        res = self.envs.step(actions)
        self.buf.add_many(actions, res.rewards, res.frames, res.terminated, res.truncated)
        done = res.terminated | res.truncated
        if done.any():
            self.buf.start_many(res.reset_frames[done], envs=np.flatnonzero(done).tolist())
        self.stack.push(res.frames, done, res.reset_frames)
        prev = self.frame
        self.frame += n
        self._replay_frames += n
        if self._replay_frames >= cfg.replay_start and len(self.buf) >= cfg.batch_size:
            if prev // cfg.sync_target != self.frame // cfg.sync_target:
                self.learner.sync_target()
            self._credit += n * cfg.replay_ratio
            self._due = int(self._credit)
            self._credit -= self._due
        return res

    def _episode(self, res, i: int) -> None:
        self.episodes += 1
        reward = float(res.episode_return[i])
        self.returns.append(reward)
        self.all_rewards.append(reward)
        now = time.perf_counter()
        fps = (self.frame - self._f_win) / max(now - self._t_win, 1e-9)
        self._t_win, self._f_win = now, self.frame
        loss = (self._loss_sum.item() / self._loss_n) if self._loss_n else None
        self._loss_sum.zero_()
        self._loss_n = 0
        if loss is not None and not math.isfinite(loss):
            raise self._diverged(f"the TD loss became {loss}")
        r100 = float(np.mean(self.returns))
        if self.log is not None:
            self.log.episode({"frame": self.frame, "episode": self.episodes, "reward": reward, "reward_100": r100,
                              "epsilon": self.epsilon, "fps": fps, "loss": loss,
                              "length": int(res.episode_length[i]), "time": now - self._t0})
        if self.best is None or r100 > self.best:
            self.best = r100
            self._checkpoint_during_run("best.pt")
        if self.cfg.reward_bound is not None and r100 > self.cfg.reward_bound:
            self.solved = True
        self.prog.update(self.frame, f"ep {self.episodes}  r100 {r100:6.2f}  eps {self.epsilon:.3f}  "
                         f"{fps:7.1f} f/s", force=True)

    def checkpoint(self, name: str) -> None:
        """best.pt: the nets. last.pt: the nets plus everything --resume needs (and, with
        save_replay, replay.npz written just before it)."""
        if self.log is None:
            return
        # A diverged net must not replace the last good checkpoint (one sync per save; saves are rare).
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.learner.online.parameters()]).all()):
            raise self._diverged("the online net's weights are no longer finite")
        trainer = None
        if name == "last.pt":  # env states first: a dead worker then leaves replay.npz and last.pt a pair
            trainer = resume_mod.trainer_state(self, replay_saved=self.cfg.save_replay)
            if self.cfg.save_replay:
                resume_mod.save_replay(self)
        save_checkpoint(os.path.join(self.out, name), self.learner, config=self.config_dict, trainer=trainer,
                        frame=self.frame, episode=self.episodes,
                        reward_100=float(np.mean(self.returns)) if self.returns else None, best_reward_100=self.best)

    def _saved_last_pt(self) -> str | None:
        last = os.path.join(self.out, "last.pt")
        return last if os.path.isfile(last) else None

    def _diverged(self, what: str) -> FloatingPointError:
        last = self._saved_last_pt()
        kept = f"{last} is the last good checkpoint" if last else "no checkpoint was saved"
        return FloatingPointError(f"training diverged at frame {self.frame:,}: {what} (a lower --lr may help); {kept}")

    def _checkpoint_during_run(self, name: str) -> None:
        """A save that fails mid-run (disk full, a folder in the way) keeps the previous file and
        the run: hours of training are worth more than one checkpoint. The final save raises."""
        try:
            self.checkpoint(name)
        except OSError as e:
            self.prog.print(f"warning: could not save {name} at frame {self.frame:,} ({e}); "
                            "the previous one is kept, training goes on")

    def run(self) -> TrainResult:
        cfg = self.cfg
        self.prog.update(self.frame, force=True)
        with resume_mod.StopSignals() as stop:  # Ctrl-C/SIGTERM: finish the step, save last.pt, return
            try:
                while (cfg.frames is None or self.frame < cfg.frames) and stop.signum is None:
                    res = self.step()
                    for i in np.flatnonzero(res.episode_end):
                        self._episode(res, i)
                    if self.solved:
                        break
                    if self.frame - self._last_ckpt >= cfg.checkpoint_every:
                        self._last_ckpt = self.frame
                        self._checkpoint_during_run("last.pt")
                    self.prog.update(self.frame)
                seconds = time.perf_counter() - self._t0
                if stop.signum is not None:
                    self.prog.print(f"{stop.name}: saving last.pt at frame {self.frame:,} (again to abort)")
                self.checkpoint("last.pt")
            except WorkerDied as e:  # the state is torn (an env is gone): keep the last good last.pt
                how = (f"continue from last.pt with: fastdqn train --resume {self.out}" if self._saved_last_pt()
                       else "no last.pt was saved yet")
                raise WorkerDied(f"{e}; {how}") from None
        self.prog.update(self.frame, force=True)
        self.prog.close()
        frame, eps_n = self.frame, self.episodes
        if self.solved:
            msg = f"solved in {frame:,} frames, {seconds / 60:.1f} minutes ({eps_n} episodes)"
        else:
            b = "n/a" if self.best is None else f"{self.best:.2f}"
            how = f"interrupted by {stop.name}" if stop.signum is not None else "stopped"
            msg = (f"{how} after {frame:,} frames, {seconds / 60:.1f} minutes: "
                   f"best reward_100 {b} ({eps_n} episodes)")
        print(f"{msg}; {frame / max(seconds, 1e-9):.0f} f/s; run dir {self.out}")
        if stop.signum is not None:
            print(f"continue with: fastdqn train --resume {self.out}")
        return TrainResult(self.out, frame, eps_n, seconds, self.solved, self.best, self.all_rewards, stop.name)

    def close(self) -> None:
        if self.prog is not None:
            self.prog.close()
        self.envs.close()
        if self.log is not None:
            png = self.log.close()
            self.log = None
            if png:
                print(f"reward curve: {png}")


def train(config: TrainConfig | None = None, *, resume: str | os.PathLike | None = None,
          **overrides) -> TrainResult:
    """Train DQN as the config says; write the run directory; return a summary.
    ``resume=DIR`` continues the run saved in DIR (its last.pt) instead; overrides may then
    change only fastdqn.resume.RESUMABLE settings (e.g. frames)."""
    if resume is not None:
        if config is not None:
            raise TypeError("train: expected either a config or resume=DIR, got both")
        cfg, ckpt = resume_mod.resume_config(resume, overrides, TrainConfig)
        trainer = Trainer(cfg, resume=ckpt)
    else:
        if config is not None and not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig (or None), got {type(config).__name__}")
        _check_fields(overrides, "train")
        trainer = Trainer(dataclasses.replace(config or TrainConfig(), **overrides))
    try:
        return trainer.run()
    finally:
        trainer.close()


def bench_specs(cfg):
    """Tables for `fastdqn bench` (group "train"): see fastdqn/train_bench.py."""
    from fastdqn.train_bench import train_specs

    return train_specs(cfg)
