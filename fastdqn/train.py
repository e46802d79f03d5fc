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

from fastdqn.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401 (re-exported)
from fastdqn.envs import EnvSpec
from fastdqn.learner import LOSSES, Learner, epsilon_at, resolve_device
from fastdqn.runlog import Progress, RunLog


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
    torch_threads: int | None = None  # torch intra-op threads (None: torch's default)
    tensorboard: bool = True
    progress: bool = True

    def env_spec(self) -> EnvSpec:
        return EnvSpec(self.env_id, self.layout, 4, self.noop_max, self.fire_reset,
                       self.episodic_life, self.clip_rewards)

    def validate(self) -> None:
        pos = ("num_envs", "batch_size", "replay_size", "replay_start", "sync_target", "checkpoint_every")
        for name in pos:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < 1):
            raise ValueError(f"frames: expected an integer >= 1 or None, got {self.frames!r}")
        if self.batch_size > self.replay_size:
            raise ValueError(f"batch_size: expected <= replay_size={self.replay_size}, got {self.batch_size}")
        if self.num_envs > self.replay_size // 8:
            raise ValueError(f"num_envs: expected <= replay_size/8={self.replay_size // 8}, got {self.num_envs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: expected a finite number > 0, got {self.lr}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma: expected 0 <= gamma <= 1, got {self.gamma}")
        for name in ("eps_start", "eps_final"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected 0 <= epsilon <= 1, got {getattr(self, name)}")
        if self.eps_decay_frames < 0:
            raise ValueError(f"eps_decay_frames: expected >= 0, got {self.eps_decay_frames}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        if self.layout not in ("crop", "full"):
            raise ValueError(f"layout: expected 'crop' or 'full', got {self.layout!r}")
        if not self.replay_ratio > 0:
            raise ValueError(f"replay_ratio: expected > 0, got {self.replay_ratio}")
        if self.torch_threads is not None and (not isinstance(self.torch_threads, int) or self.torch_threads < 1):
            raise ValueError(f"torch_threads: expected an integer >= 1 or None, got {self.torch_threads!r}")
        if self.num_workers is not None and not 0 <= self.num_workers <= self.num_envs:
            raise ValueError(f"num_workers: expected 0..num_envs={self.num_envs}, got {self.num_workers}")
        resolve_device(self.device)


PRESETS = {
    # seeds 000 (book chapter "DQN on Pong")
    "pong": dict(env_id="PongNoFrameskip-v4"),
    # seeds 001/002: FIRE reset, episodic life, clipped rewards, Huber, larger replay
    "breakout": dict(env_id="BreakoutNoFrameskip-v4", noop_max=30, episodic_life=True, clip_rewards=True,
                     loss="huber", batch_size=64, replay_size=65_536, replay_start=16_384,
                     sync_target=10_000, eps_decay_frames=1_000_000, reward_bound=400.0),
}


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
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


class Trainer:
    """One run's state. ``step()`` advances every env by one agent step (and learns);
    ``run()`` steps until --frames or solved, logging episodes. ``train()`` wraps both."""

    def __init__(self, cfg: TrainConfig, *, log: bool = True):
        from fastdqn import ReplayBuffer
        from fastdqn.vecenv import VectorEnv

        cfg.validate()
        self.cfg, self.out = cfg, cfg.out or default_out_dir(cfg.env_id)
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
            if log:
                self.log = RunLog(self.out, self.config_dict, tensorboard=cfg.tensorboard)
            self.prog = Progress(cfg.frames, cfg.progress and log)
        except BaseException:
            self.close()
            raise
        first = self.envs.reset()
        self.buf.start_many(first)
        self.stack = ObsStack(first, 4, self.learner.device)
        self.frame = self.episodes = 0
        self.returns: deque = deque(maxlen=100)
        self.all_rewards: list = []
        self.best = None
        self.solved = False
        self._credit = 0.0
        self._pending: list = []  # batches sampled for the next updates (overlap with device work)
        self._loss_sum = torch.zeros((), device=self.learner.device)
        self._loss_n = 0
        self._t0 = self._t_win = time.perf_counter()
        self._f_win = self._last_ckpt = 0

    def step(self):
        """One agent step of every env, plus the gradient steps the replay ratio asks for.
        Returns the StepResult (views valid until the next step)."""
        cfg, n = self.cfg, self.cfg.num_envs
        eps = epsilon_at(self.frame, cfg.eps_start, cfg.eps_final, cfg.eps_decay_frames)
        self.epsilon = eps
        actions = self.learner.act(self.stack.obs, eps, self.rng)
        # Queue the device work first: on CUDA it runs while the CPU steps the emulators.
        for batch in self._pending:
            self._loss_sum += self.learner.update(batch)
            self._loss_n += 1
        self._pending.clear()
        res = self.envs.step(actions)
        self.buf.add_many(actions, res.rewards, res.frames, res.terminated, res.truncated)
        done = res.terminated | res.truncated
        if done.any():
            self.buf.start_many(res.reset_frames[done], envs=np.flatnonzero(done).tolist())
        self.stack.push(res.frames, done, res.reset_frames)
        prev = self.frame
        self.frame += n
        if self.frame >= cfg.replay_start and len(self.buf) >= cfg.batch_size:
            if prev // cfg.sync_target != self.frame // cfg.sync_target:
                self.learner.sync_target()
            self._credit += n * cfg.replay_ratio
            while self._credit >= 1.0:
                self._pending.append(self.buf.sample(cfg.batch_size))
                self._credit -= 1.0
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
            raise FloatingPointError(f"TD loss became {loss} at frame {self.frame}")
        r100 = float(np.mean(self.returns))
        if self.log is not None:
            self.log.episode({"frame": self.frame, "episode": self.episodes, "reward": reward, "reward_100": r100,
                              "epsilon": self.epsilon, "fps": fps, "loss": loss,
                              "length": int(res.episode_length[i]), "time": now - self._t0})
        if self.best is None or r100 > self.best:
            self.best = r100
            self.checkpoint("best.pt")
        if self.cfg.reward_bound is not None and r100 > self.cfg.reward_bound:
            self.solved = True
        self.prog.update(self.frame, f"ep {self.episodes}  r100 {r100:6.2f}  eps {self.epsilon:.3f}  "
                         f"{fps:7.1f} f/s", force=True)

    def checkpoint(self, name: str) -> None:
        if self.log is None:
            return
        save_checkpoint(os.path.join(self.out, name), self.learner, config=self.config_dict, frame=self.frame,
                        episode=self.episodes, reward_100=float(np.mean(self.returns)) if self.returns else None,
                        best_reward_100=self.best)

    def run(self) -> TrainResult:
        cfg = self.cfg
        while cfg.frames is None or self.frame < cfg.frames:
            res = self.step()
            for i in np.flatnonzero(res.episode_end):
                self._episode(res, i)
            if self.solved:
                break
            if self.frame - self._last_ckpt >= cfg.checkpoint_every:
                self._last_ckpt = self.frame
                self.checkpoint("last.pt")
            self.prog.update(self.frame)
        seconds = time.perf_counter() - self._t0
        self.checkpoint("last.pt")
        self.prog.update(self.frame, force=True)
        self.prog.close()
        frame, eps_n = self.frame, self.episodes
        if self.solved:
            msg = f"solved in {frame:,} frames, {seconds / 60:.1f} minutes ({eps_n} episodes)"
        else:
            b = "n/a" if self.best is None else f"{self.best:.2f}"
            msg = (f"stopped after {frame:,} frames, {seconds / 60:.1f} minutes: "
                   f"best reward_100 {b} ({eps_n} episodes)")
        print(f"{msg}; {frame / max(seconds, 1e-9):.0f} f/s; run dir {self.out}")
        return TrainResult(self.out, frame, eps_n, seconds, self.solved, self.best, self.all_rewards)

    def close(self) -> None:
        if self.prog is not None:
            self.prog.close()
        self.envs.close()
        if self.log is not None:
            png = self.log.close()
            self.log = None
            if png:
                print(f"reward curve: {png}")


def train(config: TrainConfig | None = None, **overrides) -> TrainResult:
    """Train DQN as the config says; write the run directory; return a summary."""
    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        trainer.close()


def bench_specs(cfg):
    """Tables for `fastdqn bench` (group "train"): see fastdqn/train_bench.py."""
    from fastdqn.train_bench import train_specs

    return train_specs(cfg)
