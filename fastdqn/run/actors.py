"""Ape-X actors (Horgan et al. 2018) on a Ray cluster, and the learner's side of them.

An ``EnvActor`` steps its own vector env (the fast backend) with its own epsilon and returns
``Chunk``s: ``chunk_steps`` agent steps of its envs as single preprocessed frames, actions,
rewards and flags, never stacks (the learner's replay rebuilds those). The learner's
``ActorPool`` keeps at most ``in_flight`` chunk requests per actor and hands the chunks over in
each actor's order; new weights reach the actors through the object store.

Weights lag (bounded staleness): the learner offers each weight broadcast to every actor at once
(a second thread of the actor takes it while a chunk runs), and an actor starts each chunk with
the newest weights it holds, never older than those current when the chunk was requested. A
request overtaken by ``max_overtakes`` later ones is waited for, so a chunk is stored a bounded
number of chunks (and so of updates) after it was requested, whatever the actors' speeds.

Faults: Ray restarts a dead actor (``max_restarts``); its new incarnation starts new episodes.
Every chunk carries the frame each env goes on from (``start``), so when a chunk does not follow
the last one stored (a new incarnation, or a request lost in between) the learner restarts that
actor's replay streams there: an episode boundary, never a torn stack. A chunk is returned
whole or not at all.

Ray is loaded only by ``--ray`` runs (this module and fastdqn.run.ray_cluster).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import warnings
from collections import deque
from typing import NamedTuple

import numpy as np
import torch

from fastdqn.env.backend import open_vector_env
from fastdqn.env.spec import EnvSpec
from fastdqn.env.vector import WorkerDied
from fastdqn.frames.stack import FrameStacker, stack_for
from fastdqn.learn.learner import epsilon_at, epsilon_greedy
from fastdqn.learn.model import QNetSpec
from fastdqn.run.collect import Steps
from fastdqn.run.config import ray_host_port
from fastdqn.run.ray_cluster import connect, unreachable


class Chunk(NamedTuple):
    """``T`` agent steps of an actor's ``K`` envs, in step order."""

    actor: int
    incarnation: str  # new each time Ray (re)starts the actor
    seq: int  # chunk number within the incarnation
    pid: int
    start: np.ndarray  # [K, *frame]: each env's newest frame before step 0 (seq 0: its episode's first)
    steps: Steps  # the T agent steps
    episodes: list  # (k, raw return, length) of each game that ended, in order
    epsilon: float
    weights_version: int  # the learner's update count when the acting net was published
    busy_s: float  # stepping this chunk
    idle_s: float  # waiting for this request since the previous chunk


def acting_net(spec: QNetSpec) -> torch.nn.Module:
    """The net an actor acts with: in eval mode, but a noisy one in train mode, since noisy nets
    explore through their noise (epsilon 0, Rainbow's; the actor draws new noise every step)."""
    return spec.build().train(spec.noisy)


WEIGHTS_GROUP = "weights"  # the actor's thread for weight offers: they arrive while collect runs


class EnvActor:
    """Runs in a Ray worker process (one CPU): ``collect`` steps ``chunk_steps`` agent steps;
    ``offer_weights`` (in its own concurrency group) keeps the newest weights for the next chunk.

    ``epsilon``: a fixed rate, or (start, final, decay_frames) for the book chapter's linear schedule
    over the learner's frame count. The first incarnation's envs are seeded ``seed``; a restarted
    one draws fresh seeds (replaying the same games again would bias the replay)."""

    def __init__(self, spec: EnvSpec, num_envs: int, index: int, epsilon, seed: int,
                 chunk_steps: int, backend: str):
        import ray

        torch.set_num_threads(1)  # one core per actor: Ray schedules them so
        if ray.get_runtime_context().was_current_actor_reconstructed:
            seed = int(np.random.SeedSequence().entropy % 2**31)
        # one emulator thread (ale) or in-process stepping (process): the actor's one core
        self.envs, self.backend, _ = open_vector_env(spec, num_envs, backend=backend, num_workers=0, seed=seed)
        self.index, self.epsilon, self.chunk_steps = index, epsilon, chunk_steps
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)  # noisy nets' draws: each actor its own (torch's default seed is one for all)
        self.incarnation = uuid.uuid4().hex
        self.stack = FrameStacker(self.envs.reset(), stack_for(self.envs.frame_shape), "cpu")
        self.net, self.version, self.seq = None, -1, 0
        self._offered: list = []  # [version, ObjectRef]: the newest weights offered
        self._begun = 0  # collect calls begun
        self._offer_lock = threading.Lock()  # an offer lands before or after a chunk's start, not during
        self._done_at = time.perf_counter()

    def facts(self) -> dict:
        e = self.envs
        return {"n_actions": e.n_actions, "frame_shape": tuple(e.frame_shape), "frame_dtype": str(e.frame_dtype),
                "protocol": e.protocol, "backend": self.backend, "pid": os.getpid(), "incarnation": self.incarnation}

    def _take_weights(self, weights: list) -> None:
        """``weights`` is [] or [version, ObjectRef]: nested, so Ray fetches it only when newer."""
        if weights and weights[0] > self.version:
            import ray

            with warnings.catch_warnings():  # read-only views of the object store: load_state_dict only reads
                warnings.simplefilter("ignore", UserWarning)
                published = ray.get(weights[1])
                state = {k: torch.from_numpy(v) for k, v in published["weights"].items()}
            if self.net is None:  # built from the learner's net spec, published with the weights
                self.net = acting_net(QNetSpec.from_dict(published["net"]))
            self.net.load_state_dict(state)
            self.version = weights[0]

    def offer_weights(self, weights: list) -> int:
        """[version, ObjectRef] of a new broadcast; runs beside ``collect`` (WEIGHTS_GROUP), so
        the chunk after the one running starts with it, not with its request's older ones.
        Returns the chunks begun before it (this incarnation): every later one acts with it or newer."""
        with self._offer_lock:
            if not self._offered or weights[0] > self._offered[0]:
                self._offered = weights
            return self._begun

    def collect(self, frame: int, weights: list) -> Chunk:
        """``weights``: those current when the learner queued this request; newer offered ones win."""
        start = time.perf_counter()
        idle = start - self._done_at
        with self._offer_lock:
            offered, self._begun = self._offered, self._begun + 1
        self._take_weights(offered if offered and (not weights or offered[0] > weights[0]) else weights)
        if self.net is None:
            raise RuntimeError("collect: no weights yet (the learner sends them with the first request)")
        eps = (self.epsilon if isinstance(self.epsilon, float)
               else epsilon_at(frame, *self.epsilon))
        e, steps, n = self.envs, self.chunk_steps, self.envs.num_envs
        actions = np.zeros((steps, n), np.int64)
        rewards = np.zeros((steps, n), np.float32)
        frames = np.zeros((steps, n, *e.frame_shape), e.frame_dtype)
        terminated, truncated = np.zeros((steps, n), bool), np.zeros((steps, n), bool)
        resets, episodes = [], []
        start_frames = self.stack.obs[:, -1].numpy().copy()
        for t in range(steps):
            if self.net.noisy:
                self.net.reset_noise()
            a = epsilon_greedy(self.net, self.stack.obs, e.n_actions, eps, self.rng)
            res = e.step(a)
            actions[t], rewards[t], frames[t] = a, res.rewards, res.frames
            terminated[t], truncated[t] = res.terminated, res.truncated
            done = res.terminated | res.truncated
            if done.any():
                resets.append(res.reset_frames[done])  # boolean indexing: already a copy
            episodes += [(int(k), float(res.episode_return[k]), int(res.episode_length[k]))
                         for k in np.flatnonzero(res.episode_end)]
            self.stack.push(res.frames, done, res.reset_frames)
        reset_frames = np.concatenate(resets) if resets else np.zeros((0, *e.frame_shape), e.frame_dtype)
        chunk = Chunk(self.index, self.incarnation, self.seq, os.getpid(), start_frames,
                      Steps(actions, rewards, frames, terminated, truncated, reset_frames), episodes, float(eps),
                      self.version, time.perf_counter() - start, idle)
        self.seq += 1
        self._done_at = time.perf_counter()
        return chunk


class ActorPool:
    """The learner's handle on N EnvActors: ``next(frame)`` returns the next chunk of any actor
    (each actor's in order) and keeps ``in_flight`` requests queued at each one.

    Flow control: an actor steps only on a request, and a request is sent when its chunk is
    taken, so an actor runs at most ``in_flight`` chunks ahead of the learner and waits when the
    learner falls behind; the learner waits in ``next`` when the actors do.
    ``learner_wait_s`` and the actors' idle time (``actor_idle_s``) say which is happening.

    Ready chunks are taken in turn, except that a request which ``max_overtakes`` (actors *
    in_flight) later requests have overtaken is waited for: at most actors * in_flight - 1
    earlier and max_overtakes later chunks are stored between a request and its chunk, which
    bounds the chunk's weights lag in updates (RayCollector.weights_lag_bound)."""

    def __init__(self, spec: EnvSpec, *, actors: int, envs_per_actor: int, epsilons: list, seed: int,
                 chunk_steps: int, in_flight: int, max_restarts: int, timeout_s: float,
                 backend: str, address: str | None):
        ray, self.address, self._started = connect(address, num_cpus=max(actors, os.cpu_count() or 1))
        self._ray = ray
        try:
            cpus = ray.cluster_resources().get("CPU", 0)
            if cpus < actors:
                raise ValueError(f"actors: expected at most the cluster's {cpus:g} CPUs (one per actor), got {actors}")
            remote = ray.remote(num_cpus=1, max_restarts=max_restarts, max_task_retries=0,
                                concurrency_groups={WEIGHTS_GROUP: 1})(EnvActor)
            self.actors = [remote.remote(spec, envs_per_actor, i, epsilons[i], seed + 1_000 * i,
                                         chunk_steps, backend) for i in range(actors)]
            try:
                facts = ray.get([a.facts.remote() for a in self.actors], timeout=timeout_s)
            except ray.exceptions.GetTimeoutError:
                raise WorkerDied(f"ray: the {actors} actors did not start within {timeout_s:g} s on the cluster at "
                                 f"{self.address}") from None
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:  # __init__ raised
                raise WorkerDied(f"ray: an actor could not start: {_first_line(e)}") from None
        except BaseException:
            self.close()
            raise
        self.facts = facts[0]
        self.envs_per_actor, self.in_flight, self.max_restarts = envs_per_actor, in_flight, max_restarts
        self.timeout_s = timeout_s
        self.num_envs = actors * envs_per_actor
        self.incarnation = [f["incarnation"] for f in facts]
        self.pids = [f["pid"] for f in facts]
        self.next_seq: list = [None] * actors  # None: no chunk taken yet, the streams start at the first
        self.restarts = [0] * actors
        self.chunks = [0] * actors
        self.learner_wait_s = 0.0
        self.actor_idle_s = [0.0] * actors
        self.actor_busy_s = [0.0] * actors
        self._pending = [deque() for _ in range(actors)]  # each actor's _Requests, oldest first
        self._tickets = 0  # requests sent so far: their order
        self.max_overtakes = actors * in_flight
        self.most_overtaken = 0  # the most later requests any taken chunk's request was overtaken by
        self._retry_at = [[] for _ in range(actors)]  # when to resend requests that failed
        self._last_ok = [time.monotonic()] * actors
        self._weights: list = []
        self._turn = 0

    def waits(self) -> tuple[float, float, float]:
        """Seconds so far: the learner waiting for chunks, the actors idle, the actors stepping."""
        return self.learner_wait_s, sum(self.actor_idle_s), sum(self.actor_busy_s)

    def outstanding(self) -> list[int]:
        """Requests each actor has queued or due to be resent (at most ``in_flight``)."""
        return [len(q) + len(r) for q, r in zip(self._pending, self._retry_at)]

    # -- the learner's calls ------------------------------------------------------------------
    def push_weights(self, version: int, net: dict, weights: dict) -> list:
        """Publish the online net (its QNetSpec dict and numpy weights) to the object store and
        offer it to every actor (each takes it at its next chunk); the next requests carry it too
        (a restarted actor missed the offers). Nested in a list: Ray passes the reference, fetched
        only if newer.
        Returns the offers' ObjectRefs (EnvActor.offer_weights); the learner never waits for them."""
        self._weights = [version, self._ray.put({"net": net, "weights": weights})]
        # fire and forget: a dead actor's offer fails with it, its restart gets the requests' weights
        return [a.offer_weights.options(concurrency_group=WEIGHTS_GROUP).remote(self._weights) for a in self.actors]

    def fill(self, frame: int) -> None:
        """Queue requests until every actor has ``in_flight`` of them."""
        for a in range(len(self.actors)):
            while len(self._pending[a]) + len(self._retry_at[a]) < self.in_flight:
                self._submit(a, frame)

    def next(self, frame: int) -> tuple[Chunk, bool]:
        """(chunk, restart): the oldest finished chunk of any actor (its request is replaced at
        once), and whether the actor's streams must restart at ``chunk.start`` (a new
        incarnation, or a lost chunk before it)."""
        ray, t0 = self._ray, time.perf_counter()
        try:
            while True:
                self._resend_due(frame)
                heads = {q[0].ref: a for a, q in enumerate(self._pending) if q}
                oldest = min((a for a, q in enumerate(self._pending) if q), default=None,
                             key=lambda a: self._pending[a][0].ticket)
                if oldest is not None and self._pending[oldest][0].overtaken >= self.max_overtakes:
                    heads = {self._pending[oldest][0].ref: oldest}  # bounded staleness: wait for it
                ready, _ = ray.wait(list(heads), num_returns=1, timeout=0.2) if heads else ([], [])
                if not ready:
                    self._check_alive()
                    if not heads:
                        time.sleep(0.05)
                    continue
                # Of all the ready heads take the next actor after the last one taken: ray.wait's
                # own pick follows no order we set, and with a slow learner it starves some actors.
                ready = {heads[ready[0]]} | {heads[r] for r in ray.wait(list(heads), num_returns=len(heads),
                                                                         timeout=0)[0]}
                n = len(self._pending)
                a = next(b % n for b in range(self._turn, self._turn + n) if b % n in ready)
                self._turn = a + 1
                req = self._pending[a].popleft()
                try:
                    chunk = ray.get(req.ref)
                except ray.exceptions.RayActorError as e:  # its process died
                    self._failed(a, e)
                    continue
                except ray.exceptions.RayTaskError as e:  # collect raised: a bug or a broken env, not a fault
                    cause = getattr(e, "cause", None) or e
                    raise WorkerDied(f"ray: actor {a} failed: {type(cause).__name__}: {_first_line(cause)}") from None
                self._overtake(req)
                self._submit(a, frame)
                return chunk, self._accept(a, chunk)
        finally:
            self.learner_wait_s += time.perf_counter() - t0

    def close(self) -> None:
        ray = self._ray
        for a in getattr(self, "actors", []):
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # already gone with its cluster
                pass
        self.actors = []
        if self._started and ray.is_initialized():
            ray.shutdown()

    # -- requests, restarts -------------------------------------------------------------------
    def _submit(self, a: int, frame: int) -> None:
        self._tickets += 1
        self._pending[a].append(_Request(self.actors[a].collect.remote(frame, self._weights), self._tickets))

    def _overtake(self, taken: "_Request") -> None:
        """The chunk of ``taken`` is stored before the older requests still queued."""
        self.most_overtaken = max(self.most_overtaken, taken.overtaken)
        for q in self._pending:
            for r in q:
                if r.ticket < taken.ticket:
                    r.overtaken += 1

    def _resend_due(self, frame: int) -> None:
        now = time.monotonic()
        for a, due in enumerate(self._retry_at):
            while due and due[0] <= now:
                due.pop(0)
                self._submit(a, frame)

    def _failed(self, a: int, error) -> None:
        """A request to actor a failed: its process died (Ray restarts it) or the cluster is gone."""
        self._check_cluster()
        if isinstance(error, self._ray.exceptions.ActorDiedError) and self.restarts[a] >= self.max_restarts:
            raise WorkerDied(f"ray: actor {a} died after {self.restarts[a]} restarts (max {self.max_restarts}): "
                             f"{_first_line(error)}")
        self._retry_at[a].append(time.monotonic() + 0.2)  # the restarted actor takes it
        self._check_alive()

    def _accept(self, a: int, chunk: Chunk) -> bool:
        """Count the chunk; True when it does not follow the last one taken from actor a."""
        self._last_ok[a] = time.monotonic()
        restart = chunk.seq != self.next_seq[a]  # the first chunk, or one lost in between
        if chunk.incarnation != self.incarnation[a]:
            restart = True
            self.incarnation[a] = chunk.incarnation
            self.restarts[a] += 1
            self.pids[a] = chunk.pid
        self.next_seq[a] = chunk.seq + 1
        self.chunks[a] += 1
        self.actor_idle_s[a] += chunk.idle_s
        self.actor_busy_s[a] += chunk.busy_s
        return restart

    def _check_alive(self) -> None:
        now = time.monotonic()
        for a, t in enumerate(self._last_ok):
            if now - t > self.timeout_s:
                self._check_cluster()
                raise WorkerDied(f"ray: actor {a} sent nothing for {self.timeout_s:g} s (restarts: {self.restarts[a]} "
                                 f"of {self.max_restarts}; the cluster at {self.address} is overloaded or lost it)")

    def _check_cluster(self) -> None:
        host, port = ray_host_port(self.address)
        problem = unreachable(host, port, timeout=1.0)
        if problem:
            raise WorkerDied(f"ray: the Ray cluster at {self.address} went away ({problem})")


class _Request:
    """A queued chunk request: its ObjectRef, its place in the order sent, and how many requests
    sent after it have had their chunks taken first."""

    __slots__ = ("ref", "ticket", "overtaken")

    def __init__(self, ref, ticket: int):
        self.ref, self.ticket, self.overtaken = ref, ticket, 0


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
