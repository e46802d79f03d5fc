"""A run's definition: ``TrainConfig`` (every knob, the book chapter's Pong preset by default,
checked before anything is built) and the named presets."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch

from fastdqn.devices import EXPECTED as DEVICE_EXPECTED, resolve_device
from fastdqn.env.backend import BACKENDS as ENV_BACKENDS
from fastdqn.env.spec import EnvSpec
from fastdqn.frames.geometry import LAYOUTS, POOLS
from fastdqn.frames.stack import stack_for
from fastdqn.learn.learner import LOSSES, PRECISIONS, apex_epsilon, epsilon_at, native_bf16
from fastdqn.learn.model import QNetSpec
from fastdqn.run.knobs import check_field, knob, knob_of

DEVICE_NAMES = ("auto", "cpu", "cuda")  # a flag's choices; the API takes any CPU or CUDA device (resolve_device)
ALGOS = ("dqn", "pqn")


@dataclass
class TrainConfig:
    """Every knob of a run, each declared once (fastdqn.run.knobs): its type, default, range or
    choices, flag and help, and whether a resumed run may change it. Defaults are the book chapter's
    Pong preset; every flag's default is None, so the preset decides."""

    env_id: str = knob("PongNoFrameskip-v4", flag="--env", help="any registered gymnasium id with discrete actions: "
                       "Atari (v4 NoFrameskip, ALE/...-v5), vector observations (CartPole-v1) or RGB images "
                       "(default: {default})")
    device: str = knob("auto", accepts=(str, torch.device), expect=DEVICE_EXPECTED, flag_choices=DEVICE_NAMES,
                       resumable=True, help="auto | cpu | cuda (default: auto = cuda when available)")
    seed: int = knob(0, at_least=0, below=2**63,  # torch.manual_seed takes 64 bits at most
                     help="seed for the net, the envs, epsilon and replay sampling (default: {default})")
    frames: int | None = knob(None, at_least=1, resumable=True,
                              help="stop after N agent steps (default: run until reward_100 > --reward-bound)")
    num_envs: int = knob(1, at_least=1, help="environments stepped together (default: {default})")
    num_workers: int | None = knob(None, at_least=0, resumable=True,
                                   help="emulator threads (ale backend; default: one per core) or env worker "
                                   "processes (process backend; default: per core, leaving one for the learner)")
    out: str | None = knob(None, accepts=(str, os.PathLike), expect="a directory path",
                           help="run directory (default: runs/<env>-<time>)")
    batch_size: int = knob(32, at_least=1, help="transitions per gradient step (default: {default})")
    replay_size: int = knob(10_000, at_least=1, help="replay buffer capacity in transitions (default: {default:,})")
    replay_start: int = knob(10_000, at_least=1, help="agent steps before learning starts (default: {default:,})")
    lr: float = knob(1e-4, above=0, help="Adam learning rate (default: {default:g})")
    gamma: float = knob(0.99, at_least=0, at_most=1, help="discount factor (default: {default})")
    sync_target: int = knob(1_000, at_least=1, help="agent steps between target-net syncs (default: {default:,})")
    eps_start: float = knob(1.0, at_least=0, at_most=1, help="initial epsilon (default: {default})")
    eps_final: float = knob(0.01, at_least=0, at_most=1, help="final epsilon (default: {default})")
    eps_decay_frames: int = knob(150_000, at_least=0, help="agent steps of linear epsilon decay (default: {default:,})")
    reward_bound: float | None = knob(19.0, resumable=True, help="stop when the mean reward of the last 100 "
                                      "episodes exceeds this (default: {default:g})")
    loss: str = knob("mse", choices=LOSSES, help="mse (the book chapter's) | huber (default: {default})")
    double: bool = knob(False, switches={"--double": "Double DQN target (argmax by the online net)"})
    dueling: bool = knob(False, switches={  # Wang et al. 2016
        "--dueling": "dueling Q-network: value and advantage streams, advantage mean-subtracted"})
    n_step: int = knob(1, at_least=1, at_most=64, help="n-step returns: the discounted sum of n rewards, "
                       "bootstrapped n agent steps on (default: {default}, as Nature DQN)")
    prioritized: bool = knob(False, switches={"--prioritized": "proportional prioritized replay (Schaul et al. "
                             "2016): priorities from |TD error|, a sum tree in the C++ replay, importance-weighted "
                             "loss"})
    per_alpha: float = knob(0.6, at_least=0, at_most=1, help="--prioritized: priority exponent (default: {default})")
    per_beta: float = knob(0.4, at_least=0, at_most=1, help="--prioritized: importance-weight exponent, annealed "
                           "linearly to 1 over the run (default: {default})")
    per_beta_frames: int | None = knob(None, at_least=1, help="--prioritized: agent steps of that annealing "
                                       "(default: --frames, else 1,000,000)")
    per_eps: float = knob(1e-6, above=0,  # so no transition's priority is zero
                          help="--prioritized: added to |TD error| in each priority (default: {default:g})")
    # C51 (Bellemare et al. 2017; fastdqn.learn.distributional) and noisy nets (Fortunato et al. 2018)
    distributional: bool = knob(False, switches={"--distributional": "C51: a return distribution per action over "
                                "--atoms atoms on [--v-min, --v-max], a cross-entropy loss (--loss does not apply); "
                                "prioritized replay's priorities are each sample's cross-entropy"})
    atoms: int = knob(51, at_least=2, help="--distributional: atoms of the support (default: {default})")
    v_min: float = knob(-10.0, help="--distributional: the support's lowest return (default: {default:g})")
    v_max: float = knob(10.0, help="--distributional: the support's highest return (default: {default:g})")
    noisy: bool = knob(False, switches={"--noisy": "noisy nets: the head's linear layers with learned factorised "
                       "Gaussian noise (sigma0 0.5), drawn anew per update and per acting step; epsilon is 0 "
                       "(the --eps-* schedule is not used); evaluations use the mean weights"})
    adam_eps: float = knob(1e-8, above=0, help="Adam's epsilon (default: {default:g}, torch's; Rainbow: 1.5e-4)")
    replay_ratio: float = knob(1.0, above=0, help="gradient steps per agent step (default: {default:g})")
    # PQN (Gallici et al. 2024; fastdqn.learn.pqn, fastdqn.run.pqn_trainer): rollouts of rollout_steps
    # over num_envs, Q(lambda) returns, epochs of minibatches, LayerNorm; no replay, no target net.
    # Defaults: purejaxql's pqn_atari.yaml (the paper's code).
    algo: str = knob("dqn", choices=ALGOS, help="dqn (a replay and a target net: Nature DQN and the flags past it) "
                     "| pqn (PQN, Gallici et al. 2024: rollouts, Q(lambda) returns, LayerNorm, no replay, no target "
                     "net) (default: {default})")
    rollout_steps: int = knob(32, at_least=1, help="--algo pqn: agent steps of each env per rollout (default: "
                              "{default})")
    q_lambda: float = knob(0.65, at_least=0, at_most=1, help="--algo pqn: lambda of the Q(lambda) returns "
                           "(default: {default})")
    epochs: int = knob(2, at_least=1, help="--algo pqn: passes over each rollout (default: {default})")
    minibatches: int = knob(32, at_least=1, help="--algo pqn: minibatches per pass; each holds rollout_steps * "
                            "num_envs / minibatches transitions (default: {default})")
    max_grad_norm: float = knob(10.0, above=0, help="--algo pqn: the gradients' global norm is clipped to this "
                                "(default: {default:g})")
    lr_decay: bool = knob(False, switches={"--lr-decay": "--algo pqn: anneal the learning rate linearly to 0 "
                          "over --frames (CleanRL's and purejaxql's CartPole; purejaxql's Atari keeps it)"})
    precision: str = knob("fp32", choices=PRECISIONS, resumable=True, help="fp32 | bf16: the forward passes under "
                          "bf16 autocast, on a CPU or GPU with native bf16; weights, Adam and TD targets stay fp32 "
                          "(default: {default})")
    compile: bool | None = knob(None, resumable=True, switches={
        "--compile": "torch.compile the update step (with --no-graph; default: on CUDA)",
        "--no-compile": "never compile the update step"})
    graph: bool | None = knob(None, resumable=True, switches={  # None: on CUDA
        "--no-graph": "CUDA: run the update eagerly or compiled, not as one CUDA-graph replay"})
    graph_updates: int = knob(1, at_least=1, at_most=64, resumable=True,
                              help="updates a step owes that are taken at once: one CUDA-graph replay of N "
                              "captured updates, N batches sampled before it (prioritized: their priorities "
                              "land N updates late) (default: {default})")
    replay_device: str = knob("auto", choices=DEVICE_NAMES, resumable=True, help="auto | cpu | cuda: where the "
                              "replay's frames live (default: auto = on the GPU when the learner is)")
    env_backend: str = knob("auto", choices=ENV_BACKENDS, resumable=True, help="auto | ale (ale-py's C++ threads, "
                            "stepped while the learner learns) | process (any gymnasium env, snapshots for an exact "
                            "--resume, videos) (default: auto = ale for Atari where it can)")
    overlap: bool = knob(True, resumable=True, switches={
        "--no-overlap": "step the envs after the learner's updates, not while they run"})
    pipeline: bool = knob(False, resumable=True, switches={  # fastdqn.run.collect; off: slower on 2 cores
        "--pipeline": "ale backend: step two halves of the envs in turn, each on its own emulator threads, so one "
        "half steps while the other's frames are stored and acted on (an experiment for hosts with cores to "
        "spare: 0.95x one vector env on 2 cores)"})
    update_scale: int = knob(1, at_least=1, help="k: batches k times larger at a replay ratio k times smaller, "
                             "lr * sqrt(k) (default: {default})")
    layout: str = knob("crop", choices=LAYOUTS, help="frame layout: crop (the book chapter's, 84x110 cropped) | "
                       "full (84x84) (default: {default})")
    pool: str = knob("rgb", choices=POOLS, help="Atari: the order of max-pool and grey: rgb (max of the last two "
                     "RGB screens, then luma: the book chapter, Nature DQN) | grey (ALE's grey screens, then max: "
                     "gymnasium's AtariPreprocessing, Dopamine; faster on the ale backend) (default: {default})")
    noop_max: int = knob(0, at_least=0, help="random NOOPs (1..N) after reset, 0 = off (default: {default}; "
                         "breakout: 30)")
    fire_reset: bool | None = knob(False, switches={  # None: when the game has FIRE
        "--fire-reset": "press FIRE, then action 2, after every reset and lost life, as the DeepMind wrappers do "
        "(breakout preset; Pong serves without it; runs on the process env backend)",
        "--no-fire-reset": "do not press FIRE on reset (the default but for the breakout preset)"})
    episodic_life: bool = knob(False, switches={
        "--episodic-life": "a lost life ends the episode for learning (breakout preset)"})
    clip_rewards: bool = knob(False, switches={"--clip-rewards": "clip rewards to -1, 0, 1 (breakout preset)"})
    sticky_actions: float | None = knob(None, at_least=0, at_most=1, help="Atari: probability of repeating the "
                                        "previous action (default: the id's protocol, v5 0.25, v4 0)")
    max_episode_frames: int | None = knob(None, at_least=1, help="Atari: emulator frames per episode before "
                                          "truncation (default: v5 108,000; v4 ale-py's default)")
    gym_packages: tuple = knob((), metavar="MOD", help="modules to import before making the env (they register "
                               "it), in the trainer and in every env worker")
    capture_video: int | None = knob(None, at_least=1, resumable=True,
                                     help="record every N-th game of env 0 to <out>/videos/*.mp4 (H.264)")
    track: bool = knob(False, resumable=True, switches={
        "--track": "log the scalars (and --capture-video videos) to Weights & Biases, as CleanRL's --track does "
        "(pip install \"fastdqn[wandb]\"; WANDB_MODE=offline keeps it local)"})
    wandb_project: str = knob("fastdqn", resumable=True, help="W&B project with --track (default: {default})")
    wandb_entity: str | None = knob(None, resumable=True,
                                    help="W&B entity (team or user) with --track (default: yours)")
    wandb_name: str | None = knob(None, resumable=True,
                                  help="W&B run name with --track (default: the run directory's name)")
    eval_every: int | None = knob(None, at_least=1, resumable=True,  # None: none; best.pt follows reward_100
                                  help="agent steps between greedy evaluations in a separate env (whole "
                                  "games, raw scores); best.pt follows them")
    eval_episodes: int = knob(10, at_least=1, resumable=True, help="episodes per evaluation (default: {default})")
    checkpoint_every: int = knob(100_000, at_least=1, resumable=True,
                                 help="agent steps between last.pt saves (default: {default:,})")
    save_replay: bool = knob(False, resumable=True, switches={
        "--save-replay": "save the replay buffer (replay.npz) with every last.pt, so --resume continues exactly"})
    torch_threads: int | None = knob(None, at_least=1, flag="--threads", resumable=True, help="torch CPU threads "
                                     "(default: torch's choice; 1 is steadier on a busy shared machine)")
    # Ape-X scale-out on Ray (fastdqn.run.ray_collector; the ray extra): actors step the envs, this
    # process learns. num_envs stays 1: the replay has actors * envs_per_actor streams. The CLI's
    # --ray [ADDRESS] sets ray and ray_address.
    ray: bool = knob(False)
    ray_address: str | None = knob(None, flag=None, resumable=True)  # HOST:PORT, ray://HOST:PORT or auto
    actors: int = knob(1, at_least=1, help="--ray: Ray actors, one CPU each, each stepping its own vector env with "
                       "its own epsilon (Ape-X: 0.4^(1 + 7i/(N-1)); one actor: the --eps-* schedule) "
                       "(default: {default})")
    envs_per_actor: int = knob(1, at_least=1, help="--ray: envs each actor steps (default: {default})")
    chunk_steps: int = knob(50, at_least=1, resumable=True, help="--ray: agent steps per env in each chunk an actor "
                            "sends (default: {default})")
    weights_every: int = knob(100, at_least=1, resumable=True, help="--ray: gradient steps between weight "
                              "broadcasts to the actors (default: {default})")
    actor_in_flight: int = knob(2, at_least=1, resumable=True, help="--ray: chunk requests queued per actor, how "
                                "far it may run ahead of the learner (default: {default})")
    actor_restarts: int = knob(3, at_least=0, resumable=True, help="--ray: restarts of a dead actor before the run "
                               "fails (default: {default})")
    actor_timeout: float = knob(60.0, above=0, resumable=True, help="--ray: seconds an actor may send nothing "
                                "before the run fails (default: {default:g})")
    tensorboard: bool = knob(True, resumable=True, switches={"--no-tensorboard": "do not write TensorBoard events"})
    reward_curve: bool = knob(True, resumable=True, switches={
        "--no-reward-curve": "do not draw reward_curve.png at the end (matplotlib takes about a second)"})
    progress: bool = knob(True, resumable=True, switches={"--no-progress": "no live progress line"})

    def net_spec(self, n_actions: int, frame_shape: tuple) -> QNetSpec:
        """The Q-network this config trains, for envs of ``n_actions`` and ``frame_shape`` frames."""
        return QNetSpec(n_actions, (stack_for(frame_shape), *frame_shape), "dueling" if self.dueling else "plain",
                        atoms=self.atoms if self.distributional else 1, v_min=self.v_min, v_max=self.v_max,
                        noisy=self.noisy, layer_norm=self.algo == "pqn")

    def env_spec(self) -> EnvSpec:
        if not isinstance(self.gym_packages, (tuple, list)):
            raise TypeError(f"gym_packages: expected a list of module names, got {self.gym_packages!r}")
        return EnvSpec(self.env_id, self.layout, 4, self.noop_max, self.fire_reset, self.episodic_life,
                       self.clip_rewards, sticky_actions=self.sticky_actions,
                       max_episode_frames=self.max_episode_frames, gym_packages=tuple(self.gym_packages),
                       pool=self.pool)

    def epsilon_at(self, frame: int) -> float:
        """The exploration rate at ``frame``: the --eps-* schedule, or 0 with noisy nets, which
        explore through their noise (Rainbow)."""
        return 0.0 if self.noisy else epsilon_at(frame, self.eps_start, self.eps_final, self.eps_decay_frames)

    def actor_epsilons(self) -> list:
        """Each Ray actor's exploration: one actor follows the --eps-* schedule ((start, final,
        decay_frames)), several take Ape-X's fixed rates; with noisy nets every actor's is 0."""
        n = self.actors
        if self.noisy:
            return [0.0] * n
        return [(self.eps_start, self.eps_final, self.eps_decay_frames)] if n == 1 else [apex_epsilon(i, n)
                                                                                         for i in range(n)]

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

    def _validate_distribution(self) -> None:
        """C51's support: set only with distributional=True (--distributional), and then v_min < v_max."""
        if not self.distributional:
            for f in dataclasses.fields(self):
                if f.name in ("atoms", "v_min", "v_max") and getattr(self, f.name) != f.default:
                    raise ValueError(f"{f.name}: expected {f.default!r} without distributional (--distributional), "
                                     f"got {getattr(self, f.name)!r}")
        elif not self.v_min < self.v_max:
            raise ValueError(f"v_max: expected > v_min={self.v_min:g}, got {self.v_max:g}")

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

    def _validate_algo(self) -> None:
        """Each algorithm's own fields stay at their defaults under the other, and PQN's rollout splits
        into its minibatches. PQN keeps no replay and no target net: its returns are Q(lambda), not
        n-step, and its envs step in this process, as one vector env."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        pqn_only = ("rollout_steps", "q_lambda", "epochs", "minibatches", "max_grad_norm", "lr_decay")
        dqn_only = {"batch_size": "minibatches set it", "replay_size": "no replay", "replay_start": "no replay",
                    "sync_target": "no target net", "double": "no target net", "n_step": "Q(lambda) returns",
                    "prioritized": "no replay", "per_alpha": "no replay", "per_beta": "no replay",
                    "per_beta_frames": "no replay", "per_eps": "no replay", "replay_ratio": "epochs set it",
                    "update_scale": "minibatches set it", "graph_updates": "one minibatch step per graph replay",
                    "replay_device": "the rollout lives on the learner's device", "save_replay": "no replay",
                    "pipeline": "one vector env steps a rollout", "ray": "rollouts from this process's envs",
                    "distributional": "its returns are Q-values", "noisy": "it explores epsilon-greedily"}
        for name, why in ((n, "a PQN knob") for n in pqn_only) if self.algo == "dqn" else dqn_only.items():
            if getattr(self, name) != defaults[name]:
                raise ValueError(f"{name}: expected {defaults[name]!r} with algo={self.algo!r} ({why}), got "
                                 f"{getattr(self, name)!r}" + (" (PQN's presets: pqn-cartpole, pqn-pong)"
                                                               if self.algo == "pqn" else ""))
        if self.algo == "pqn":
            if (self.rollout_steps * self.num_envs) % self.minibatches:
                raise ValueError(f"minibatches: expected a divisor of rollout_steps * num_envs = "
                                 f"{self.rollout_steps * self.num_envs}, got {self.minibatches}")
            if self.lr_decay and self.frames is None:
                raise ValueError("lr_decay: expected False without --frames (the decay ends at --frames), got True")

    def validate(self) -> None:
        """Raise TypeError (wrong type) or ValueError (bad value) naming the field, what it expects
        and what it got, before anything is built or written. Only reads the config. Each field's
        own type and range are in its declaration; here follow the rules across fields."""
        def bad(name, want, v):
            raise ValueError(f"{name}: expected {want}, got {v!r}")

        for f in dataclasses.fields(self):
            check_field(f, getattr(self, f.name))
        if self.batch_size > self.replay_size:
            raise ValueError(f"batch_size: expected <= replay_size={self.replay_size}, got {self.batch_size}")
        if self.batch_size * self.update_scale > self.replay_size:
            raise ValueError(f"update_scale: expected batch_size * update_scale <= replay_size={self.replay_size}, "
                             f"got {self.batch_size} * {self.update_scale}")
        self._validate_algo()
        self._validate_ray()
        self._validate_distribution()
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


# Settings a resumed run may change; the others define the run and must stay as saved.
RESUMABLE = tuple(f.name for f in dataclasses.fields(TrainConfig) if knob_of(f).resumable)


def ray_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray cluster address HOST:PORT or ray://HOST:PORT; None for "auto"."""
    if address == "auto":
        return None
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ray: expected a cluster address HOST:PORT (or ray://HOST:PORT, auto), got {address!r}")
    return host, int(port)


PRESETS = {
    # the book chapter's ("DQN on Pong")
    "pong": dict(env_id="PongNoFrameskip-v4"),
    # CartPole-v1, vector observations and an MLP: rl-baselines3-zoo's tuned DQN for
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
    # Rainbow (Hessel et al. 2018, Table 1) on Pong, all six parts: Double DQN, prioritized replay
    # (alpha 0.5, beta 0.4 -> 1), dueling, 3-step returns, C51 (51 atoms on [-10, 10]), noisy nets
    # (sigma0 0.5, epsilon 0); Adam lr 6.25e-5 with eps 1.5e-4, 20k agent steps (80k frames) before
    # learning, target sync every 8k agent steps (32k frames), an update every 4 agent steps, and
    # Rainbow's 1M-transition replay: 7.1 GB of deduplicated uint8 frames (pong-rainbow-lite: 100k)
    "rainbow": dict(env_id="PongNoFrameskip-v4", double=True, prioritized=True, per_alpha=0.5, per_beta=0.4,
                    dueling=True, n_step=3, distributional=True, atoms=51, v_min=-10.0, v_max=10.0, noisy=True,
                    lr=6.25e-5, adam_eps=1.5e-4, replay_size=1_000_000, replay_start=20_000, sync_target=8_000,
                    replay_ratio=0.25),
    # the DeepMind wrappers Breakout needs: FIRE reset, episodic life, clipped rewards, Huber, larger
    # replay (the process env backend: the ale one cannot take those reset steps for one env alone)
    "breakout": dict(env_id="BreakoutNoFrameskip-v4", noop_max=30, fire_reset=True, episodic_life=True, clip_rewards=True,
                     loss="huber", batch_size=64, replay_size=65_536, replay_start=16_384,
                     sync_target=10_000, eps_decay_frames=1_000_000, reward_bound=400.0),
    # PQN on CartPole-v1: purejaxql's pqn_cartpole.yaml (32 envs x 64 steps, 4 epochs x 16
    # minibatches, lr 1e-4 annealed to 0, lambda 0.95, epsilon 1 -> 0.2 over 20% of the run, grad
    # norm 10, LayerNorm MLP of 2 x 256) at 500k agent steps; not its reward scale 0.1 (no knob:
    # the LayerNorm net learns the unscaled returns). Greedy evaluations pick best.pt.
    "pqn-cartpole": dict(env_id="CartPole-v1", algo="pqn", num_envs=32, rollout_steps=64, epochs=4, minibatches=16,
                         lr=1e-4, lr_decay=True, q_lambda=0.95, eps_final=0.2, eps_decay_frames=100_000,
                         frames=500_000, reward_bound=None, eval_every=25_000, eval_episodes=5,
                         checkpoint_every=100_000),
    # PQN on Pong: purejaxql's pqn_atari.yaml (128 envs x 32 steps, 2 epochs x 32 minibatches, RAdam
    # lr 2.5e-4 kept constant, lambda 0.65, gamma 0.99, epsilon 1 -> 0.001 over 10% of its 50M
    # agent steps, grad norm 10; envpool's 84x84 resize of grey screens: layout full, pool grey), on
    # the ale backend: without envpool's 30 no-ops (the process backend's), and Pong has neither
    # lives nor rewards past +-1, so episodic life and reward clipping change nothing. Stops at
    # reward_100 > 19, as the pong preset.
    "pqn-pong": dict(env_id="PongNoFrameskip-v4", algo="pqn", num_envs=128, rollout_steps=32, epochs=2,
                     minibatches=32, lr=2.5e-4, q_lambda=0.65, eps_final=0.001, eps_decay_frames=5_000_000,
                     layout="full", pool="grey"),
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
