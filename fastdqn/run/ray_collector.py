"""Ape-X style scale-out (``fastdqn train --ray``): N Ray actors step the envs, this process learns.

The learner owns the C++ frame-deduplicating replay with one stream per actor env, so sampling
never crosses the network; what does is one preprocessed frame per agent step and env (plus one
per chunk: where the chunk starts). ``RayCollector.collect`` is the Trainer's collector for
``--ray`` runs: take the updates owed, publish weights when due, take the next chunk of any
actor; the Trainer stores it and counts its agent steps (target sync, updates owed) as it does
for a local run.

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

import numpy as np

from fastdqn.run.actors import ActorPool
from fastdqn.run.collect import Collected, Collector


class RayCollector(Collector):
    """The Trainer's collector for ``--ray`` runs: N Ray actors (their ActorPool, ``pool``) step
    the envs with their own epsilons; each collect returns one actor's chunk."""

    fresh_episodes_why = "Ray actors start fresh episodes"

    def __init__(self, cfg, replay_ratio: float):
        self.cfg, self.replay_ratio = cfg, replay_ratio
        n = cfg.actors
        self.pool = pool = ActorPool(cfg.env_spec(), actors=n, envs_per_actor=cfg.envs_per_actor,
                                     epsilons=cfg.actor_epsilons(),
                                     seed=cfg.seed, chunk_steps=cfg.chunk_steps,
                                     in_flight=cfg.actor_in_flight, max_restarts=cfg.actor_restarts,
                                     timeout_s=cfg.actor_timeout, backend=cfg.env_backend, address=cfg.ray_address)
        facts = pool.facts
        self.n_actions, self.frame_shape = facts["n_actions"], tuple(facts["frame_shape"])
        self.frame_dtype, self.protocol = np.dtype(facts["frame_dtype"]), facts["protocol"]
        self.num_envs, self.backend, self.workers = pool.num_envs, f"ray/{facts['backend']}", None  # one core per actor
        self._weights_at = None  # learner updates at the last broadcast (None: none yet)
        self._window = (time.perf_counter(), 0.0, 0.0, 0.0)  # wall, learner wait, actor idle, actor busy
        self._reported_restarts = 0
        self.lag_n, self.lag_sum, self.lag_max = 0, 0, 0
        self._actor_returns = deque(maxlen=100)  # the lowest-epsilon actor's games (score_source)
        self._source = None

    @property
    def weights_lag_bound(self) -> int:
        """The most updates a stored chunk's weights can be behind: up to weights_every - 1 when
        it is requested, plus the updates of the chunks stored from then on (the one taken just
        before, at most actors * in_flight - 1 sent earlier and max_overtakes sent later), at most
        ceil(agent steps per chunk * replay ratio) each."""
        cfg, pool = self.cfg, self.pool
        per_chunk = math.ceil(cfg.chunk_steps * cfg.envs_per_actor * self.replay_ratio)
        return cfg.weights_every - 1 + (cfg.actors * pool.in_flight + pool.max_overtakes) * per_chunk

    # -- the chunks -----------------------------------------------------------------------------
    def collect(self, learner, frame: int, epsilon_at, learn) -> Collected:
        """Learn what the chunks stored so far earned, publish the net when due, then take one
        chunk of any actor (``epsilon_at`` is unused: each actor has its own epsilon)."""
        pool = self.pool
        learn()
        if self._weights_at is None:  # the first chunk: the actors get the net, then their requests
            self._publish_weights(learner)
            pool.fill(frame)
        elif learner.updates - self._weights_at >= self.cfg.weights_every:
            self._publish_weights(learner)
        chunk, restart = pool.next(frame)
        lag = learner.updates - chunk.weights_version
        self.lag_n, self.lag_sum, self.lag_max = self.lag_n + 1, self.lag_sum + lag, max(self.lag_max, lag)
        self._report_restarts(frame)
        k = pool.envs_per_actor
        games = []
        if chunk.episodes:
            extra = {"actor": chunk.actor, "epsilon": chunk.epsilon, "weights_lag": lag, **self._idle_fractions()}
            games = [(chunk.actor * k + env, ret, length, extra) for env, ret, length in chunk.episodes]
        return Collected(np.arange(chunk.actor * k, (chunk.actor + 1) * k), chunk.start if restart else None,
                         chunk.steps, games, {"chunk": chunk, "restart": restart, "weights_lag": lag})

    def _publish_weights(self, learner) -> None:
        """The online net to the actors; its version is the learner's update count (the lag's unit)."""
        self._weights_at = learner.updates
        weights = {k: v.detach().cpu().numpy() for k, v in learner.online.state_dict().items()}
        self.pool.push_weights(self._weights_at, learner.net.to_dict(), weights)

    def _report_restarts(self, frame: int) -> None:
        pool = self.pool
        if sum(pool.restarts) > self._reported_restarts:
            self._reported_restarts = sum(pool.restarts)
            self.notify(f"ray: actor restarted at frame {frame:,} (restarts per actor {pool.restarts}; its "
                        "streams start new episodes)")

    def _idle_fractions(self) -> dict:
        """Since the last call: the learner's share of wall time spent waiting for chunks, and the
        actors' share of their time spent waiting for requests; restarts so far."""
        now, (wall0, wait0, idle0, busy0) = time.perf_counter(), self._window
        wait, idle, busy = self.pool.waits()
        self._window = (now, wait, idle, busy)
        return {"learner_wait": (wait - wait0) / max(now - wall0, 1e-9),
                "actor_idle": (idle - idle0) / max(idle - idle0 + busy - busy0, 1e-9),
                "restarts": sum(self.pool.restarts)}

    # -- scores, the summary ----------------------------------------------------------------------
    def score_source(self, default: dict) -> dict:
        cfg = self.cfg
        if cfg.actors == 1:  # one actor on the --eps-* schedule: as a local run
            src = default
        elif cfg.eval_every:
            src = {"reward_bound": "eval", "best_pt": "eval"}
        else:
            last = cfg.actors - 1  # the smallest epsilon
            src = {"reward_bound": "reward_100_actor", "best_pt": "reward_100_actor", "actor": last,
                   "epsilon": cfg.actor_epsilons()[last]}
        self._source = src
        return src

    def score(self, reward: float, extra: dict, r100: float):
        src = self._source
        if src["reward_bound"] != "reward_100_actor":
            return r100, {}
        if extra["actor"] == src["actor"]:
            self._actor_returns.append(reward)
        score = float(np.mean(self._actor_returns)) if self._actor_returns else None
        return score, {"reward_100_actor": score}

    def resume_scores(self, records: list) -> None:
        """The actor's last 100 games, from the metrics kept up to last.pt (RunState holds all games' only)."""
        if self._source["reward_bound"] == "reward_100_actor":
            actor = self._source["actor"]
            self._actor_returns.extend(r["reward"] for r in records if r.get("actor") == actor)

    def summary(self, seconds: float) -> str:
        pool = self.pool
        wait, idle, busy = pool.waits()
        src = self._source
        if src["reward_bound"] == "eval":
            scored = "the greedy evaluations"
        elif src["reward_bound"] == "reward_100_actor":
            scored = f"actor {src['actor']}'s reward_100 (epsilon {src['epsilon']:.2g})"
        else:
            scored = "reward_100"
        lag = f"mean {self.lag_sum / self.lag_n:.0f}, max {self.lag_max}" if self.lag_n else "n/a"
        return (f"; ray: {len(pool.restarts)} actors, {sum(pool.chunks)} chunks, learner waited "
                f"{wait / max(seconds, 1e-9):.0%}, actors idle {idle / max(idle + busy, 1e-9):.0%}, restarts "
                f"{pool.restarts}, weights lag {lag} updates (bound {self.weights_lag_bound}); "
                f"reward bound and best.pt by {scored}")

    def close(self) -> None:
        self.pool.close()
