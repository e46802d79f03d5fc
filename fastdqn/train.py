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
    num_workers: int | None = None  # env processes (None: 0 for one env, else min(envs, cores))
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


def default_out_dir(env_id: str) -> str:
    return os.path.join("runs", f"{env_id}-{time.strftime('%Y%m%d-%H%M%S')}")


def train(config: TrainConfig | None = None, **overrides) -> TrainResult:
    """Train DQN as the config says; write the run directory; return a summary."""
    from fastdqn import ReplayBuffer
    from fastdqn.vecenv import VectorEnv

    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    cfg.validate()
    out = cfg.out or default_out_dir(cfg.env_id)
    device = resolve_device(cfg.device)
    workers = cfg.num_workers
    if workers is None:
        workers = 0 if cfg.num_envs == 1 else min(cfg.num_envs, os.cpu_count() or 1)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    config_dict = dataclasses.asdict(cfg) | {"out": out, "device_resolved": str(device), "num_workers": workers}

    n = cfg.num_envs
    envs = VectorEnv(cfg.env_spec(), n, num_workers=workers, seed=cfg.seed)
    log = prog = None
    try:
        learner = Learner(envs.n_actions, device=device, lr=cfg.lr, gamma=cfg.gamma, loss=cfg.loss,
                          double=cfg.double, compile=cfg.compile)
        buf = ReplayBuffer(cfg.replay_size, num_envs=n, seed=cfg.seed)
        log = RunLog(out, config_dict, tensorboard=cfg.tensorboard)
        prog = Progress(cfg.frames, cfg.progress)
        return _loop(cfg, out, envs, learner, buf, log, prog, rng, config_dict)
    finally:
        if prog is not None:
            prog.close()
        envs.close()
        if log is not None:
            png = log.close()
            if png:
                print(f"reward curve: {png}")


def _loop(cfg, out, envs, learner, buf, log, prog, rng, config_dict) -> TrainResult:
    n = cfg.num_envs
    first = envs.reset()
    buf.start_many(first)
    stack = ObsStack(first, 4, learner.device)
    returns: deque = deque(maxlen=100)
    all_rewards: list = []
    frame = episodes = 0
    best = None
    solved = False
    credit = 0.0
    pending: list = []  # batches sampled for the next updates (overlap with device work)
    loss_sum = torch.zeros((), device=learner.device)
    loss_n = 0
    t0 = t_win = time.perf_counter()
    f_win = 0
    last_ckpt = 0

    def ckpt(name: str) -> None:
        save_checkpoint(os.path.join(out, name), learner, config=config_dict, frame=frame,
                        episode=episodes, reward_100=float(np.mean(returns)) if returns else None,
                        best_reward_100=best)

    while cfg.frames is None or frame < cfg.frames:
        eps = epsilon_at(frame, cfg.eps_start, cfg.eps_final, cfg.eps_decay_frames)
        actions = learner.act(stack.obs, eps, rng)
        # Queue the device work first: on CUDA it runs while the CPU steps the emulators.
        for batch in pending:
            loss_sum += learner.update(batch)
            loss_n += 1
        pending.clear()
        res = envs.step(actions)
        buf.add_many(actions, res.rewards, res.frames, res.terminated, res.truncated)
        done = res.terminated | res.truncated
        if done.any():
            buf.start_many(res.reset_frames[done], envs=np.flatnonzero(done).tolist())
        stack.push(res.frames, done, res.reset_frames)
        prev, frame = frame, frame + n

        if frame >= cfg.replay_start and len(buf) >= cfg.batch_size:
            if prev // cfg.sync_target != frame // cfg.sync_target:
                learner.sync_target()
            credit += n * cfg.replay_ratio
            while credit >= 1.0:
                pending.append(buf.sample(cfg.batch_size))
                credit -= 1.0

        for i in np.flatnonzero(res.episode_end):
            episodes += 1
            reward = float(res.episode_return[i])
            returns.append(reward)
            all_rewards.append(reward)
            now = time.perf_counter()
            fps = (frame - f_win) / max(now - t_win, 1e-9)
            t_win, f_win = now, frame
            loss = (loss_sum.item() / loss_n) if loss_n else None
            loss_sum.zero_()
            loss_n = 0
            if loss is not None and not math.isfinite(loss):
                raise FloatingPointError(f"TD loss became {loss} at frame {frame}")
            r100 = float(np.mean(returns))
            log.episode({"frame": frame, "episode": episodes, "reward": reward, "reward_100": r100,
                         "epsilon": eps, "fps": fps, "loss": loss, "length": int(res.episode_length[i]),
                         "time": now - t0})
            if best is None or r100 > best:
                best = r100
                ckpt("best.pt")
            if cfg.reward_bound is not None and r100 > cfg.reward_bound:
                solved = True
            prog.update(frame, f"ep {episodes}  r100 {r100:6.2f}  eps {eps:.3f}  {fps:7.1f} f/s", force=True)
        if solved:
            break
        if frame - last_ckpt >= cfg.checkpoint_every:
            last_ckpt = frame
            ckpt("last.pt")
        prog.update(frame)

    seconds = time.perf_counter() - t0
    ckpt("last.pt")
    prog.update(frame, force=True)
    prog.close()
    if solved:
        msg = f"solved in {frame:,} frames, {seconds / 60:.1f} minutes ({episodes} episodes)"
    else:
        b = "n/a" if best is None else f"{best:.2f}"
        msg = f"stopped after {frame:,} frames, {seconds / 60:.1f} minutes: best reward_100 {b} ({episodes} episodes)"
    print(f"{msg}; {frame / max(seconds, 1e-9):.0f} f/s; run dir {out}")
    return TrainResult(out, frame, episodes, seconds, solved, best, all_rewards)
