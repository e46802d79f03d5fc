"""Ape-X style scale-out (``fastdqn train --ray``): N Ray actors step the envs, this process learns.

The learner owns the C++ frame-deduplicating replay with one stream per actor env, so sampling
never crosses the network; what does is one preprocessed frame per agent step and env (plus one
per chunk: where the chunk starts). ``RayTrainer.step`` reads as: take the next chunk, store
it, count its agent steps (target sync, updates owed), take the updates owed, publish weights.

The replay ratio holds whatever the number of actors: updates are owed per stored agent step
and taken before the next chunk is. So when the actors are faster the learner keeps them
waiting (each runs at most ``actor_in_flight`` chunks ahead), and when the learner is faster it
waits for data; the metrics log both (``learner_wait``, ``actor_idle``).

Weights lag: a chunk's ``weights_lag`` is the learner's update count when it is stored minus
that of the net the actor acted with. Actors take the newest broadcast when they start a chunk
and the pool waits for overtaken requests (fastdqn.run.actors), so it never exceeds
``weights_lag_bound``; metrics.jsonl, TensorBoard (``ray/weights_lag``) and the summary log it.

Solved: with several actors the games mix exploration rates (Ape-X epsilons 0.4 to 0.4^8), so
--reward-bound and best.pt follow the greedy evaluations (--eval-every) or else the mean of the
last 100 games of the lowest-epsilon actor (the last one), ``reward_100_actor`` in the metrics;
config.json's ``score_source`` says which.

Resume: last.pt holds the learner, the counters and (``--save-replay``) the replay; the actors
start fresh episodes, and each actor's streams restart at its first chunk (the stored episodes
end where they were cut, never sampled past the cut).
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import NamedTuple

import numpy as np

from fastdqn.learn.learner import apex_epsilon
from fastdqn.run.actors import ActorPool, Chunk
from fastdqn.run.trainer import Trainer


class Received(NamedTuple):
    chunk: Chunk
    restart: bool  # the actor's streams restarted at chunk.start (a new incarnation, or its first chunk)
    weights_lag: int  # learner updates when stored minus those of the weights the actor acted with


class RayTrainer(Trainer):
    """A Trainer whose envs are Ray actors (``self.envs`` is their ActorPool)."""

    def __init__(self, cfg, *, log: bool = True, resume: dict | None = None):
        super().__init__(cfg, log=log, resume=resume)
        if resume is not None and self.log is not None and self.score_source["reward_bound"] == "reward_100_actor":
            # the actor's last 100 games, from the metrics kept up to last.pt (RunState holds all games' only)
            actor = self.score_source["actor"]
            self._actor_returns.extend(r["reward"] for r in self.log.records if r.get("actor") == actor)

    def _open_envs(self, video):
        cfg = self.cfg
        n = cfg.actors
        epsilons = ([(cfg.eps_start, cfg.eps_final, cfg.eps_decay_frames)] if n == 1
                    else [apex_epsilon(i, n) for i in range(n)])
        pool = ActorPool(cfg.env_spec(), actors=n, envs_per_actor=cfg.envs_per_actor, epsilons=epsilons,
                         seed=cfg.seed, dueling=cfg.dueling, chunk_steps=cfg.chunk_steps,
                         in_flight=cfg.actor_in_flight, max_restarts=cfg.actor_restarts,
                         timeout_s=cfg.actor_timeout, backend=cfg.env_backend, address=cfg.ray_address)
        self._weights_at = None  # learner updates at the last broadcast (None: none yet)
        self._window = (time.perf_counter(), 0.0, 0.0, 0.0)  # wall, learner wait, actor idle, actor busy
        self._reported_restarts = 0
        self.lag_n, self.lag_sum, self.lag_max, self._last_lag = 0, 0, 0, 0
        self._actor_returns = deque(maxlen=100)  # the lowest-epsilon actor's games (score_source)
        return pool, f"ray/{pool.facts['backend']}", None  # workers: one core per actor, no knob

    def _first_frames(self, stack: int):
        self.stack = None  # the actors act; each actor's first chunk starts its streams
        return None

    def _score_source(self) -> dict:
        cfg = self.cfg
        if cfg.actors == 1:  # one actor on the --eps-* schedule: as a local run
            return super()._score_source()
        if cfg.eval_every:
            return {"reward_bound": "eval", "best_pt": "eval"}
        last = cfg.actors - 1  # the smallest epsilon
        return {"reward_bound": "reward_100_actor", "best_pt": "reward_100_actor", "actor": last,
                "epsilon": apex_epsilon(last, cfg.actors)}

    def _score(self, reward: float, extra: dict, r100: float):
        src = self.score_source
        if src["reward_bound"] != "reward_100_actor":
            return r100, {}
        if extra["actor"] == src["actor"]:
            self._actor_returns.append(reward)
        score = float(np.mean(self._actor_returns)) if self._actor_returns else None
        return score, {"reward_100_actor": score}

    @property
    def weights_lag_bound(self) -> int:
        """The most updates a stored chunk's weights can be behind: up to weights_every - 1 when
        it is requested, plus the updates of the chunks stored from then on (the one taken just
        before, at most actors * in_flight - 1 sent earlier and max_overtakes sent later), at most
        ceil(agent steps per chunk * replay ratio) each."""
        cfg, pool = self.cfg, self.envs
        per_chunk = math.ceil(cfg.chunk_steps * cfg.envs_per_actor * self.replay_ratio)
        return cfg.weights_every - 1 + (cfg.actors * pool.in_flight + pool.max_overtakes) * per_chunk

    # -- the algorithm ------------------------------------------------------------------------
    def step(self) -> Received:
        """Take one chunk of any actor into the replay and learn what it earned."""
        pool, s = self.envs, self.state
        if self._weights_at is None:  # the first step: the actors get the net, then their requests
            self._publish_weights()
            pool.fill(s.frame)
        chunk, restart = pool.next(s.frame)
        lag = self.learner.updates - chunk.weights_version
        self.lag_n, self.lag_sum, self.lag_max = self.lag_n + 1, self.lag_sum + lag, max(self.lag_max, lag)
        self._last_lag = lag
        self._store_chunk(chunk, restart)
        self._sync_and_count(chunk.actions.size)
        self.learn(s.take_due())
        if self.learner.updates - self._weights_at >= self.cfg.weights_every:
            self._publish_weights()
        self._report_restarts()
        return Received(chunk, restart, lag)

    def _publish_weights(self) -> None:
        """The online net to the actors; its version is the learner's update count (the lag's unit)."""
        self._weights_at = self.learner.updates
        state = {k: v.detach().cpu().numpy() for k, v in self.learner.online.state_dict().items()}
        self.envs.push_weights(self._weights_at, state)

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
        extra = {"actor": chunk.actor, "epsilon": chunk.epsilon, "weights_lag": self._last_lag,
                 **self._idle_fractions()}
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
        src = self.score_source
        if src["reward_bound"] == "eval":
            scored = "the greedy evaluations"
        elif src["reward_bound"] == "reward_100_actor":
            scored = f"actor {src['actor']}'s reward_100 (epsilon {src['epsilon']:.2g})"
        else:
            scored = "reward_100"
        lag = f"mean {self.lag_sum / self.lag_n:.0f}, max {self.lag_max}" if self.lag_n else "n/a"
        return (f"{super()._summary(seconds, signal_name)}; ray: {len(pool.restarts)} actors, "
                f"{sum(pool.chunks)} chunks, learner waited {wait / max(seconds, 1e-9):.0%}, "
                f"actors idle {idle / max(idle + busy, 1e-9):.0%}, restarts {pool.restarts}, "
                f"weights lag {lag} updates (bound {self.weights_lag_bound}); "
                f"reward bound and best.pt by {scored}")
