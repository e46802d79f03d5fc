"""A run's definition: ``TrainConfig`` (every knob, the seeds' Pong preset by default, checked
before anything is built) and the named presets."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch

from fastdqn.devices import resolve_device
from fastdqn.env.backend import BACKENDS as ENV_BACKENDS
from fastdqn.env.spec import EnvSpec
from fastdqn.frames.geometry import POOLS
from fastdqn.learn.learner import LOSSES, PRECISIONS, native_bf16


@dataclass
class TrainConfig:
    """Every knob of a run. Defaults are the seeds' Pong preset."""

    env_id: str = "PongNoFrameskip-v4"
    device: str = "auto"
    seed: int = 0
    frames: int | None = None  # stop after this many agent steps (None: until solved)
    num_envs: int = 1
    num_workers: int | None = None  # env processes, or emulator threads with env_backend "ale" (None: per core)
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
    dueling: bool = False  # value and advantage streams (Wang et al. 2016)
    n_step: int = 1  # n-step returns: bootstrap from the stack n agent steps on (gamma^n)
    prioritized: bool = False  # proportional prioritized replay (Schaul et al. 2016)
    per_alpha: float = 0.6  # priority exponent
    per_beta: float = 0.4  # importance-weight exponent at the start, annealed linearly to 1
    per_beta_frames: int | None = None  # agent steps of that annealing (None: --frames, else 1,000,000)
    per_eps: float = 1e-6  # added to |TD error| so no transition's priority is zero
    replay_ratio: float = 1.0  # gradient steps per agent step (the seeds: one)
    precision: str = "fp32"  # "bf16": forward passes under bf16 autocast (CPUs and GPUs with native bf16)
    compile: bool | None = None  # torch.compile the update (None: on CUDA when it is not graphed)
    graph: bool | None = None  # the whole update as one CUDA-graph replay (None: on CUDA)
    replay_device: str = "auto"  # where the replay's frames live: "auto" (the learner's CUDA device, else host), "cpu", "cuda"
    env_backend: str = "auto"  # "ale" (ale-py's C++ threads), "process" (VectorEnv), "auto" (ale where it can run)
    overlap: bool = True  # the learner's updates run while the envs step
    update_scale: int = 1  # k: batches k times larger, k times fewer updates, lr * sqrt(k)
    layout: str = "crop"
    pool: str = "rgb"  # Atari: "rgb" max-pools RGB screens then takes luma; "grey" max-pools ALE's grey screens
    noop_max: int = 0
    fire_reset: bool | None = False  # FIRE then 2 after every reset (None: when the game has FIRE); Pong serves alone
    episodic_life: bool = False
    clip_rewards: bool = False
    sticky_actions: float | None = None  # Atari: None keeps the id's protocol (v5: 0.25, v4: 0)
    max_episode_frames: int | None = None  # Atari: emulator frames per episode (None: v5 108,000)
    gym_packages: tuple = ()  # modules that register envs, imported here and in every env worker
    capture_video: int | None = None  # record every N-th game of env 0 to <out>/videos (None: off)
    track: bool = False  # log to Weights & Biases (the wandb extra)
    wandb_project: str = "fastdqn"
    wandb_entity: str | None = None
    wandb_name: str | None = None  # None: the run directory's name
    eval_every: int | None = None  # agent steps between greedy evaluations (None: none; best.pt follows reward_100)
    eval_episodes: int = 10
    checkpoint_every: int = 100_000  # frames between last.pt saves
    save_replay: bool = False  # also save the replay buffer with last.pt (exact --resume)
    torch_threads: int | None = None  # torch intra-op threads (None: torch's default)
    # Ape-X scale-out on Ray (fastdqn.run.ray_trainer; the ray extra): actors step the envs, this
    # process learns. num_envs stays 1: the replay has actors * envs_per_actor streams.
    ray: bool = False
    ray_address: str | None = None  # HOST:PORT, ray://HOST:PORT or auto (None: a private cluster on this machine)
    actors: int = 1  # Ray actors, one CPU each, each with its own vector env and epsilon
    envs_per_actor: int = 1
    chunk_steps: int = 50  # agent steps per env in each chunk an actor sends
    weights_every: int = 100  # gradient steps between weight broadcasts to the actors
    actor_in_flight: int = 2  # chunk requests queued per actor (how far it may run ahead of the learner)
    actor_restarts: int = 3  # times Ray restarts a dead actor before the run fails
    actor_timeout: float = 60.0  # seconds an actor may send nothing (dead, not restarting) before the run fails
    tensorboard: bool = True
    reward_curve: bool = True  # reward_curve.png at the end of the run (matplotlib: about a second)
    progress: bool = True

    def env_spec(self) -> EnvSpec:
        if not isinstance(self.gym_packages, (tuple, list)):
            raise TypeError(f"gym_packages: expected a list of module names, got {self.gym_packages!r}")
        return EnvSpec(self.env_id, self.layout, 4, self.noop_max, self.fire_reset, self.episodic_life,
                       self.clip_rewards, sticky_actions=self.sticky_actions,
                       max_episode_frames=self.max_episode_frames, gym_packages=tuple(self.gym_packages),
                       pool=self.pool)

    def per_beta_at(self, frame: int) -> float:
        """Prioritized replay's importance exponent: per_beta at frame 0, linearly to 1 over
        per_beta_frames (default: the run's --frames, or 1,000,000 agent steps)."""
        span = self.per_beta_frames or self.frames or 1_000_000
        return self.per_beta + (1.0 - self.per_beta) * min(1.0, frame / span)

    def learning_schedule(self) -> tuple[int, float, float]:
        """(batch size, replay ratio, learning rate) after ``update_scale`` k: batch * k at
        replay ratio / k (the same samples per agent step in k times fewer updates) with Adam's
        square-root scaling rule, lr * sqrt(k) (Malladi et al. 2022)."""
        k = self.update_scale
        return self.batch_size * k, self.replay_ratio / k, self.lr * math.sqrt(k)

    def streams(self) -> int:
        """Envs feeding the replay, one stream each: num_envs, or with Ray actors * envs_per_actor."""
        return self.actors * self.envs_per_actor if self.ray else self.num_envs

    def _validate_ray(self) -> None:
        """The Ray fields: only with ray=True, and then what the actors can run."""
        ray_only = {"ray_address": None, "actors": 1, "envs_per_actor": 1}
        if not self.ray:
            for name, default in ray_only.items():
                if getattr(self, name) != default:
                    raise ValueError(f"{name}: expected {default!r} without ray (--ray), got {getattr(self, name)!r}")
            return
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ValueError('ray: expected Ray installed for --ray, got none (install the extra: '
                             'pip install "fastdqn[ray]")')
        for name, default, why in (("num_envs", 1, "set --envs-per-actor"), ("num_workers", None, "one core per actor"),
                                   ("capture_video", None, "actors record no videos")):
            if getattr(self, name) != default:
                raise ValueError(f"{name}: expected {default!r} with ray ({why}), got {getattr(self, name)!r}")
        if self.ray_address is not None:
            ray_host_port(self.ray_address)
        if self.streams() > self.replay_size // 8:
            raise ValueError(f"actors: expected actors * envs_per_actor <= replay_size/8={self.replay_size // 8}, "
                             f"got {self.actors} * {self.envs_per_actor}")

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
                ("num_workers", 0), ("torch_threads", 1), ("seed", 0), ("eval_every", 1), ("eval_episodes", 1),
                ("max_episode_frames", 1), ("capture_video", 1), ("update_scale", 1), ("n_step", 1),
                ("per_beta_frames", 1), ("actors", 1), ("envs_per_actor", 1), ("chunk_steps", 1),
                ("weights_every", 1), ("actor_in_flight", 1), ("actor_restarts", 0))
        for name, lo in ints:
            v, none_ok = getattr(self, name), name in ("frames", "num_workers", "torch_threads", "eval_every",
                                                       "max_episode_frames", "capture_video", "per_beta_frames")
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
                 ("reward_bound", "a finite number or None", lambda v: True),
                 ("sticky_actions", "a number in [0, 1] or None", lambda v: 0 <= v <= 1),
                 ("per_alpha", "a number in [0, 1]", lambda v: 0 <= v <= 1),
                 ("per_beta", "a number in [0, 1]", lambda v: 0 <= v <= 1),
                 ("per_eps", "a finite number > 0", lambda v: v > 0),
                 ("actor_timeout", "a finite number > 0", lambda v: v > 0))
        for name, want, ok in reals:
            v = getattr(self, name)
            if v is None and name in ("reward_bound", "sticky_actions"):
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                bad(name, want, v, TypeError)
            if (isinstance(v, float) and not math.isfinite(v)) or not ok(v):  # NaN and inf are never meant
                bad(name, want, v)
        for name in ("env_id", "loss", "layout", "pool", "wandb_project", "env_backend", "replay_device", "precision"):
            if not isinstance(getattr(self, name), str):
                bad(name, "a str", getattr(self, name), TypeError)
        for name in ("wandb_entity", "wandb_name", "ray_address"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                bad(name, "a str or None", getattr(self, name), TypeError)
        if self.loss not in LOSSES:
            bad("loss", f"one of {LOSSES}", self.loss)
        if self.layout not in ("crop", "full"):
            bad("layout", "'crop' or 'full'", self.layout)
        if self.out is not None and not isinstance(self.out, (str, os.PathLike)):
            bad("out", "a directory path or None", self.out, TypeError)
        if not isinstance(self.device, (str, torch.device)):
            bad("device", "'auto', 'cpu' or 'cuda'", self.device, TypeError)
        for name, allowed in (("env_backend", ENV_BACKENDS), ("replay_device", ("auto", "cpu", "cuda")),
                              ("precision", PRECISIONS), ("pool", POOLS)):
            if getattr(self, name) not in allowed:
                bad(name, f"one of {allowed}", getattr(self, name))
        if self.n_step > 64:
            bad("n_step", "an integer in [1, 64]", self.n_step)
        if self.batch_size > self.replay_size:
            raise ValueError(f"batch_size: expected <= replay_size={self.replay_size}, got {self.batch_size}")
        if self.batch_size * self.update_scale > self.replay_size:
            raise ValueError(f"update_scale: expected batch_size * update_scale <= replay_size={self.replay_size}, "
                             f"got {self.batch_size} * {self.update_scale}")
        self._validate_ray()
        if self.num_envs > self.replay_size // 8:
            raise ValueError(f"num_envs: expected <= replay_size/8={self.replay_size // 8}, got {self.num_envs}")
        if self.num_workers is not None and self.num_workers > self.num_envs:
            raise ValueError(f"num_workers: expected 0..num_envs={self.num_envs}, got {self.num_workers}")
        self.env_spec()  # EnvSpec checks its fields (a typo in the env id fails at env creation)
        device = resolve_device(self.device)
        if self.graph and device.type != "cuda":
            bad("graph", f"False or None on {device} (CUDA graphs need a CUDA device)", self.graph)
        if self.graph and self.compile:
            raise ValueError("compile: expected False or None with graph=True (the graph captures the eager "
                             "update), got True")
        if self.precision == "bf16" and not native_bf16(device):
            bad("precision", f"'fp32' on {device}, which has no native bf16", self.precision)
        if self.replay_device == "cuda" and device.type != "cuda":
            bad("replay_device", f"'auto' or 'cpu' with the learner on {device} (a CUDA replay feeds a CUDA learner)",
                self.replay_device)


def ray_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray cluster address HOST:PORT or ray://HOST:PORT; None for "auto"."""
    if address == "auto":
        return None
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ray: expected a cluster address HOST:PORT (or ray://HOST:PORT, auto), got {address!r}")
    return host, int(port)


PRESETS = {
    # seeds 000 (book chapter "DQN on Pong")
    "pong": dict(env_id="PongNoFrameskip-v4"),
    # seed 002's environment, vector observations and an MLP: rl-baselines3-zoo's tuned DQN for
    # CartPole-v1 (lr 2.3e-3, batch 64, replay 100k from 1k, epsilon to 0.04 over 16% of 50k steps,
    # Huber loss, 128 updates per 256 steps with the target copied between those bursts), as a
    # per-step schedule: 0.5 updates per agent step and a target sync every 256. Greedy
    # evaluations every 5k steps pick best.pt; a run stops at 50k steps.
    "cartpole": dict(env_id="CartPole-v1", frames=50_000, lr=2.3e-3, batch_size=64, replay_size=100_000,
                     replay_start=1_000, sync_target=256, eps_final=0.04, eps_decay_frames=8_000,
                     loss="huber", replay_ratio=0.5, reward_bound=None, eval_every=5_000, eval_episodes=5,
                     checkpoint_every=10_000),
    # Rainbow "lite" (Hessel et al. 2018, Table 1) on Pong: 3-step returns, prioritized replay
    # (alpha 0.5, beta 0.4 -> 1), the dueling head, Double DQN, Adam lr 6.25e-5, 20k agent steps
    # before learning, target sync every 8k agent steps (32k frames), an update every 4 agent
    # steps, epsilon to 0.01 over 250k agent steps. Not included: the distributional C51 head,
    # noisy nets and Adam's eps 1.5e-4; the replay is 100k (Rainbow: 1M) to fit in 0.7 GB.
    "pong-rainbow-lite": dict(env_id="PongNoFrameskip-v4", n_step=3, prioritized=True, per_alpha=0.5, per_beta=0.4,
                              dueling=True, double=True, lr=6.25e-5, replay_size=100_000, replay_start=20_000,
                              sync_target=8_000, replay_ratio=0.25, eps_final=0.01, eps_decay_frames=250_000),
    # seeds 001/002: FIRE reset, episodic life, clipped rewards, Huber, larger replay (the process
    # env backend: the ale one cannot take those reset steps for one env alone)
    "breakout": dict(env_id="BreakoutNoFrameskip-v4", noop_max=30, fire_reset=True, episodic_life=True, clip_rewards=True,
                     loss="huber", batch_size=64, replay_size=65_536, replay_start=16_384,
                     sync_target=10_000, eps_decay_frames=1_000_000, reward_bound=400.0),
}


def check_fields(overrides: dict, who: str) -> None:
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise TypeError(f"{who}: expected TrainConfig fields as overrides, got unknown {unknown}")


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    check_fields(overrides, "preset")
    return TrainConfig(**{**PRESETS[name], **overrides})
