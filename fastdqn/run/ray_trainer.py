"""Ape-X style scale-out (``fastdqn train --ray``): N Ray actors step the envs, this process learns.

The learner owns the C++ frame-deduplicating replay with one stream per actor env, so sampling
never crosses the network; what does is one preprocessed frame per agent step and env (plus one
per chunk: where the chunk starts). ``RayTrainer.step`` reads as: take the next chunk, store
it, count its agent steps (target sync, updates owed), take the updates owed, publish weights.

The replay ratio holds whatever the number of actors: updates are owed per stored agent step
and taken before the next chunk is. So when the actors are faster the learner keeps them
waiting (each runs at most ``actor_in_flight`` chunks ahead), and when the learner is faster it
waits for data; the metrics log both (``learner_wait``, ``actor_idle``).

Resume: last.pt holds the learner, the counters and (``--save-replay``) the replay; the actors
start fresh episodes, and each actor's streams restart at its first chunk (the stored episodes
end where they were cut, never sampled past the cut).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from fastdqn.learn.learner import apex_epsilon
from fastdqn.run.actors import ActorPool, Chunk
from fastdqn.run.trainer import Trainer


class Received(NamedTuple):
    chunk: Chunk
    restart: bool  # the actor's streams restarted at chunk.start (a new incarnation, or its first chunk)


class RayTrainer(Trainer):
    """A Trainer whose envs are Ray actors (``self.envs`` is their ActorPool)."""

    def _open_envs(self, video):
        cfg = self.cfg
        n = cfg.actors
        epsilons = ([(cfg.eps_start, cfg.eps_final, cfg.eps_decay_frames)] if n == 1
                    else [apex_epsilon(i, n) for i in range(n)])
        pool = ActorPool(cfg.env_spec(), actors=n, envs_per_actor=cfg.envs_per_actor, epsilons=epsilons,
                         seed=cfg.seed, dueling=cfg.dueling, chunk_steps=cfg.chunk_steps,
                         in_flight=cfg.actor_in_flight, max_restarts=cfg.actor_restarts,
                         timeout_s=cfg.actor_timeout, backend=cfg.env_backend, address=cfg.ray_address)
        self._weights_version = 0
        self._window = (time.perf_counter(), 0.0, 0.0, 0.0)  # wall, learner wait, actor idle, actor busy
        self._reported_restarts = 0
        return pool, f"ray/{pool.facts['backend']}", None  # workers: one core per actor, no knob

    def _first_frames(self, stack: int):
        self.stack = None  # the actors act; each actor's first chunk starts its streams
        return None

    # -- the algorithm ------------------------------------------------------------------------
    def step(self) -> Received:
        """Take one chunk of any actor into the replay and learn what it earned."""
        pool, s = self.envs, self.state
        if self._weights_version == 0:  # the first step: the actors get the net, then their requests
            self._publish_weights()
            pool.fill(s.frame)
        chunk, restart = pool.next(s.frame)
        self._store_chunk(chunk, restart)
        self._sync_and_count(chunk.actions.size)
        self.learn(s.take_due())
        if self.learner.updates - self._weights_at >= self.cfg.weights_every:
            self._publish_weights()
        self._report_restarts()
        return Received(chunk, restart)

    def _publish_weights(self) -> None:
        self._weights_version += 1
        self._weights_at = self.learner.updates
        state = {k: v.detach().cpu().numpy() for k, v in self.learner.online.state_dict().items()}
        self.envs.push_weights(self._weights_version, state)

    def _store_chunk(self, chunk: Chunk, restart: bool) -> None:
        """The chunk's steps into its actor's streams, in order; where an episode ended, the next
        one starts from its first frame."""
        k = self.envs.envs_per_actor
        envs = np.arange(chunk.actor * k, (chunk.actor + 1) * k)
        if restart:
            self.buf.start_many(chunk.start, envs=envs)
        done, d = chunk.terminated | chunk.truncated, 0
        for t in range(chunk.actions.shape[0]):
            self.buf.add_many(chunk.actions[t], chunk.rewards[t], chunk.frames[t], chunk.terminated[t],
                              chunk.truncated[t], envs=envs)
            if done[t].any():
                n = int(done[t].sum())
                self.buf.start_many(chunk.reset_frames[d:d + n], envs=envs[done[t]])
                d += n

    def _report_restarts(self) -> None:
        pool = self.envs
        if sum(pool.restarts) > self._reported_restarts:
            self._reported_restarts = sum(pool.restarts)
            self.prog.print(f"ray: actor restarted at frame {self.state.frame:,} (restarts per actor "
                            f"{pool.restarts}; its streams start new episodes)")

    # -- episodes ------------------------------------------------------------------------------
    def _ended(self, res: Received):
        chunk, k = res.chunk, self.envs.envs_per_actor
        if not chunk.episodes:
            return []
        extra = {"actor": chunk.actor, "epsilon": chunk.epsilon, **self._idle_fractions()}
        return [(chunk.actor * k + env, ret, length, extra) for env, ret, length in chunk.episodes]

    def _idle_fractions(self) -> dict:
        """Since the last call: the learner's share of wall time spent waiting for chunks, and the
        actors' share of their time spent waiting for requests; restarts so far."""
        now, (wall0, wait0, idle0, busy0) = time.perf_counter(), self._window
        wait, idle, busy = self.envs.waits()
        self._window = (now, wait, idle, busy)
        return {"learner_wait": (wait - wait0) / max(now - wall0, 1e-9),
                "actor_idle": (idle - idle0) / max(idle - idle0 + busy - busy0, 1e-9),
                "restarts": sum(self.envs.restarts)}

    def _summary(self, seconds: float, signal_name: str | None) -> str:
        pool = self.envs
        wait, idle, busy = pool.waits()
        return (f"{super()._summary(seconds, signal_name)}; ray: {len(pool.restarts)} actors, "
                f"{sum(pool.chunks)} chunks, learner waited {wait / max(seconds, 1e-9):.0%}, "
                f"actors idle {idle / max(idle + busy, 1e-9):.0%}, restarts {pool.restarts}")
