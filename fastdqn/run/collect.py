"""Collectors: what steps the envs and hands the Trainer its transitions.

``collect(learner, frame, epsilon_at, learn)`` returns a ``Collected``: T agent steps of K replay
streams and the games that ended in them, acted on with epsilon ``epsilon_at(frame)`` (the
schedule, so a collector may draw a later step's actions ahead); ``learn()`` takes the gradient
steps the Trainer owes while the envs step. ``LocalCollector`` steps a vector env in this process and acts on its frame
stacks; ``PipelinedCollector`` does so with two halves of the envs in turn, so one half steps
while the other's frames are stored and acted on; with ``--ray`` the actors of
fastdqn.run.ray_collector step theirs and send chunks. The Trainer does the same with all of
them: store, count, learn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from fastdqn.devices import upload
from fastdqn.env.backend import open_vector_env, resolve_backend
from fastdqn.env.ale_vector import default_threads
from fastdqn.frames.stack import FrameStacker, stack_for
from fastdqn.learn.learner import exploration_draws


class Steps(NamedTuple):
    """T agent steps of K envs, in step order: what the replay stores of them."""

    actions: np.ndarray  # int64 [T, K]
    rewards: np.ndarray  # float32 [T, K]
    frames: np.ndarray  # [T, K, *frame]: the frame after each action (a tensor on a device replay's device)
    terminated: np.ndarray  # bool [T, K]
    truncated: np.ndarray  # bool [T, K]
    reset_frames: np.ndarray  # [D, *frame]: the next episode's first frame of each done (t, k), in order (ditto)


class Collected(NamedTuple):
    """Agent steps of K replay streams (views valid until the next collect)."""

    envs: np.ndarray | None  # int64 [K]: the replay streams of these steps (None: all, in order)
    start: np.ndarray | None  # [K, *frame]: where the streams (re)start before step 0 (None: they go on)
    steps: Steps
    games: list  # (stream, raw return, length, extra record fields) of each game that ended
    info: dict  # the collector's own facts of these steps (Ray: the actor's chunk and its weights lag)

    @property
    def agent_steps(self) -> int:
        return self.steps.actions.size


class Collector:
    """What the Trainer reads of every collector. The defaults are a local run's: games score
    by reward_100, nothing to add to the summary."""

    n_actions: int
    frame_shape: tuple
    frame_dtype: np.dtype
    protocol: dict  # what the emulators really play
    num_envs: int  # replay streams
    backend: str
    workers: int | None
    fresh_episodes_why = ""  # why a resumed run starts the episodes in flight over
    notify = staticmethod(print)  # the Trainer's progress printer, once it has one

    def score_source(self, default: dict) -> dict:
        return default

    def score(self, reward: float, extra: dict, r100: float) -> tuple[float | None, dict]:
        """(the score after this game that reward_bound and best.pt compare, extra record fields)."""
        return r100, {}

    def resume_scores(self, records: list) -> None:
        """The metrics records kept up to last.pt, for a score over more than RunState holds."""

    def summary(self, seconds: float) -> str:
        return ""

    def state_dict(self) -> dict:
        """The collector's part of last.pt: ``rng``, ``obs`` (the acting stacks), ``envs`` (snapshots)."""
        return {"rng": None, "obs": None, "envs": None}

    def load_state_dict(self, state: dict) -> bool:
        """Take a last.pt's part; True when the episodes in flight go on exactly (else they start over)."""
        return False

    def continue_streams(self) -> None:
        """The replay holds the streams up to now (an exact resume): the next steps go on from them."""

    def close(self) -> None:
        pass


class _Group:
    """Envs stepped together: a vector env, its acting stacks, its replay streams.

    ``upload`` (on when the stacks are on CUDA): each step's new frames cross to the device once,
    for the stacks and, with ``to_replay`` (a replay on the device), for the replay too, which then
    gets them as that device tensor; a host replay gets the host frames. Off, the frames stay on
    the host (the CPU path: the stacks shift in place, nothing else is done)."""

    def __init__(self, envs, first: int, device, to_replay: bool = False):
        self.envs, self.first = envs, first
        self.streams = np.arange(first, first + envs.num_envs)
        reset = envs.reset()
        self.stack = FrameStacker(reset, stack_for(envs.frame_shape), device)
        self.upload = self.stack.device.type == "cuda"
        self.to_replay = to_replay and self.upload
        self.restart = True  # the first steps start the replay's streams, at start_frames
        self.start_frames = np.array(reset)  # the stacks' newest frames, on the host: no copy back from a GPU
        self.in_flight, self.sent = False, None  # the actions of the step in flight
        self._no_resets = np.zeros((0, *envs.frame_shape), envs.frame_dtype)

    def collected(self, actions: np.ndarray, res, streams) -> Collected:
        """One agent step's Collected; the new frames onto the acting stacks."""
        done = res.terminated | res.truncated
        ended = done.any()  # most steps end no episode: skip the indexing then
        start = None
        if self.restart:
            start, self.restart = self.start_frames, False
        frames, resets = res.frames, res.reset_frames[done] if ended else self._no_resets
        if self.upload:
            frames, resets = self._push_uploaded(frames, resets, done, ended)
        else:
            self.stack.push(frames, done if ended else None, res.reset_frames)
        games = [] if not ended else [(self.first + int(i), float(res.episode_return[i]), int(res.episode_length[i]),
                                       {}) for i in np.flatnonzero(res.episode_end)]
        steps = Steps(actions[None], res.rewards[None], frames[None], res.terminated[None], res.truncated[None],
                      resets)
        return Collected(streams, start, steps, games, {})

    def _push_uploaded(self, frames, resets, done, ended) -> tuple:
        """The step's frames (and the next episodes' first ones) onto the stacks in one upload;
        (frames, resets) for the replay: those device tensors, or the host arrays for a host replay."""
        dev = self.stack.device
        up = upload(frames, dev)
        self.stack.push(up)
        if ended:  # rare: the restarts' frames cross once too
            up_resets = upload(resets, dev)
            self.stack.restart(np.flatnonzero(done), up_resets)
            resets = up_resets if self.to_replay else resets
        return (up, resets) if self.to_replay else (frames, resets)


class LocalCollector(Collector):
    """One vector env in this process: act (epsilon-greedy on its stacks), send the actions,
    ``learn()`` while the emulators step (``overlap``; else before), receive.

    Sending ahead (the 'ale' backend, overlapped): the next step's exploration draws are drawn
    before this step's frames arrive; where every env explores, its actions read no frame, so
    that step starts before this one's frames are made, stored and stacked (epsilon 1 before
    learning starts: the emulators never wait for the main thread). The draws come from the
    same generator in the same order, so the run is the one stepped in order."""

    def __init__(self, groups: list, *, seed: int, overlap: bool, backend: str, workers: int):
        self.groups, self.overlap, self.backend, self.workers = groups, overlap, backend, workers
        self.rng = np.random.default_rng(seed)  # epsilon-greedy draws
        envs = groups[0].envs
        self.n_actions, self.frame_shape, self.frame_dtype = envs.n_actions, envs.frame_shape, envs.frame_dtype
        self.protocol = envs.protocol
        self.num_envs = sum(g.envs.num_envs for g in groups)
        self.snapshots = len(groups) == 1 and envs.snapshots
        self.fresh_episodes_why = f"the {backend!r} env backend cannot snapshot emulators"
        self.send_ahead = overlap and len(groups) == 1 and getattr(envs, "sends_ahead", False)
        self._draws = None  # the next step's exploration draws, drawn ahead
        self._rng_before = None  # the generator's state before them: what a checkpoint keeps
        self._ahead_frame = None  # the frame the step sent ahead starts at

    @property
    def obs(self) -> torch.Tensor:
        """The acting stacks of every env [N, k, *frame] (one group: its live tensor; else a copy)."""
        stacks = [g.stack.obs for g in self.groups]
        return stacks[0] if len(stacks) == 1 else torch.cat(stacks)

    def collect(self, learner, frame: int, epsilon_at, learn) -> Collected:
        g = self.groups[0]
        self._rng_before = None
        if g.in_flight:  # this step was sent ahead by the last collect
            if frame != self._ahead_frame:
                raise RuntimeError(f"collect: expected frame {self._ahead_frame} (the step sent ahead), got {frame}")
            actions, g.in_flight = g.sent, False
        else:
            draws, self._draws = self._draws, None
            actions = learner.act(g.stack.obs, epsilon_at(frame), self.rng if draws is None else None, draws)
            if not self.overlap:
                learn()
                return g.collected(actions, g.envs.step(actions), None)
            g.envs.send(actions)
        learn()
        ahead = self._draw_ahead(learner, frame + self.num_envs, epsilon_at) if self.send_ahead else None
        res = g.envs.recv() if ahead is None else g.envs.recv(send_next=ahead)
        if ahead is not None:
            g.sent, g.in_flight, self._ahead_frame = ahead, True, frame + self.num_envs
        return g.collected(actions, res, None)

    def _draw_ahead(self, learner, frame: int, epsilon_at) -> np.ndarray | None:
        """The next step's exploration draws; its actions when every env explores (None: it
        must see its frames, and acts on these draws)."""
        if not learner.blind_exploration:
            return None
        self._rng_before = self.rng.bit_generator.state
        uniform, actions = exploration_draws(self.rng, self.num_envs, self.n_actions)
        if (uniform < epsilon_at(frame)).all():
            return actions
        self._draws = uniform, actions
        return None

    def state_dict(self) -> dict:
        return {"rng": self._rng_before or self.rng.bit_generator.state, "obs": self.obs.to("cpu", copy=True),
                "envs": self.groups[0].envs.get_state() if self.snapshots else None}

    def load_state_dict(self, state: dict) -> bool:
        exact = state["envs"] is not None and self.snapshots
        if exact:
            g = self.groups[0]
            try:
                g.stack.load(state["obs"])
            except ValueError as e:
                raise ValueError(f"resume: {e}") from None
            g.start_frames = state["obs"][:, -1].cpu().numpy().copy()  # a replay refilled from here starts there
            g.envs.set_state(state["envs"])
        self.rng.bit_generator.state = state["rng"]
        self._draws = self._rng_before = None
        return exact

    def continue_streams(self) -> None:
        for g in self.groups:
            g.restart = False

    def close(self) -> None:
        for g in self.groups:
            g.envs.close()


class PipelinedCollector(LocalCollector):
    """Two halves of the envs, each on its own emulator threads, in turn: while one half steps,
    the other's frames are received, stacked, acted on and sent back, and the learner learns,
    so the main thread's work per step (about 0.3 ms for 8 Pong envs) need not leave the
    emulator threads waiting. Each agent step draws its epsilon-greedy randoms for all envs
    at once, so with a fixed epsilon the actions are those of the LocalCollector.

    Opt-in (``--pipeline``): on a 2-core AMD EPYC it stepped 0.95-0.97x as fast as one vector
    env (docs/performance.md, 2026-12-02): three busy threads on two cores and twice the
    per-step Python cost ate the overlap a bare ale-py loop shows (1.09x)."""

    def __init__(self, groups: list, **kw):
        super().__init__(groups, **kw)
        self._turn = 0
        self._draws = None  # this agent step's exploration draws, drawn when the first half is sent

    def _send(self, g: _Group, learner, epsilon: float) -> None:
        if g is self.groups[0]:
            self._draws = exploration_draws(self.rng, self.num_envs, self.n_actions)
        part = tuple(d[g.streams] for d in self._draws)
        g.sent = learner.act(g.stack.obs, epsilon, None, part)
        g.envs.send(g.sent)
        g.in_flight = True

    def collect(self, learner, frame: int, epsilon_at, learn) -> Collected:
        epsilon = epsilon_at(frame)
        for h in self.groups:  # the first collect (or after a reset): every half goes out
            if not h.in_flight:
                self._send(h, learner, epsilon)
        g = self.groups[self._turn]
        res = g.envs.recv()
        g.in_flight = False
        got = g.collected(g.sent, res, g.streams)
        self._send(g, learner, epsilon)  # its next step runs while the rest is done
        learn()
        self._turn ^= 1
        return got


def pipeline_problem(backend: str, threads: int, num_envs: int, overlap: bool) -> str | None:
    """Why the envs cannot step in two pipelined halves (None: they can)."""
    if backend != "ale":
        return f"the {backend!r} env backend steps one vector env"
    if not 2 <= threads <= num_envs:  # more threads than envs: AleVectorEnv names that mistake
        return f"each half needs an emulator thread and an env (--num-workers {threads}, --num-envs {num_envs})"
    if not overlap:
        return "--no-overlap steps the envs only after the learner's updates"
    return None


def open_collector(cfg, device, video, replay_ratio: float, replay_on_device: bool = False) -> Collector:
    """The collector a config asks for: Ray actors (``cfg.ray``), else this process's envs, as
    one vector env or (``cfg.pipeline``) in two pipelined halves of the 'ale' backend's envs.
    ``replay_on_device``: the replay lives on ``device`` and takes the frames uploaded there."""
    if cfg.ray:
        from fastdqn.run.ray_collector import RayCollector

        return RayCollector(cfg, replay_ratio)
    spec, n = cfg.env_spec(), cfg.num_envs
    backend = resolve_backend(spec, cfg.env_backend, video=video is not None)
    threads = (default_threads(n) if cfg.num_workers is None else max(1, cfg.num_workers)) if backend == "ale" else 0
    problem = pipeline_problem(backend, threads, n, cfg.overlap) if cfg.pipeline else None
    if problem:
        raise ValueError(f"pipeline: expected False, got True ({problem})")
    if not cfg.pipeline:
        envs, backend, workers = open_vector_env(spec, n, backend=backend, num_workers=cfg.num_workers,
                                                 seed=cfg.seed, video=video)
        return LocalCollector([_Group(envs, 0, device, replay_on_device)], seed=cfg.seed, overlap=cfg.overlap,
                              backend=backend, workers=workers)
    halves = [(n + 1) // 2, n // 2]
    groups = []
    try:
        for i, (k, t) in enumerate(zip(halves, [(threads + 1) // 2, threads // 2])):
            first = halves[0] * i  # ale-py seeds its envs seed, seed + 1, ...: as one vector env would
            envs, _, _ = open_vector_env(spec, k, backend="ale", num_workers=t, seed=cfg.seed + first)
            groups.append(_Group(envs, first, device, replay_on_device))
    except BaseException:
        for g in groups:
            g.envs.close()
        raise
    return PipelinedCollector(groups, seed=cfg.seed, overlap=True, backend=backend, workers=threads)
