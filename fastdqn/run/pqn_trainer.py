"""PQN's training loop (``--algo pqn``; fastdqn.learn.pqn): the Trainer's run, episodes,
checkpoints, evaluations and logs, with PQN's learning in place of DQN's replay.

``PQNTrainer.step`` is the algorithm: collect one agent step of every env (the learner acts and
records what it acted on), record the step into the rollout, count. When a rollout is full, the
next collect's act gives its bootstrap (max Q of the last observations) and the collector's
``learn()`` runs its epochs while the envs take that step (``--no-overlap``: before it): the act
comes first either way, so both orders train alike, and the first step of each rollout is acted
on by the net before that rollout's predecessor's epochs.
"""

from __future__ import annotations

import torch

from fastdqn.learn.pqn import PQNLearner
from fastdqn.run.collect import Collected
from fastdqn.run.trainer import Trainer


class PQNTrainer(Trainer):
    """A Trainer whose learner is a PQNLearner over this process's envs (``Trainer(cfg)`` with
    ``cfg.algo == "pqn"`` makes one). No replay: ``resume`` restarts the rollout in progress."""

    stores_replay = False

    def _build_learning(self, c, device, lr: float, replay_on_device: bool) -> dict:
        cfg = self.cfg
        self.learner = PQNLearner(cfg.net_spec(c.n_actions, c.frame_shape), steps=cfg.rollout_steps,
                                  envs=c.num_envs, obs_dtype=torch.from_numpy(c.frame_dtype.type(0)[None]).dtype,
                                  device=device, lr=lr, gamma=cfg.gamma, q_lambda=cfg.q_lambda, epochs=cfg.epochs,
                                  minibatches=cfg.minibatches, max_grad_norm=cfg.max_grad_norm, loss=cfg.loss,
                                  compile=cfg.compile, graph=cfg.graph, precision=cfg.precision, seed=cfg.seed,
                                  adam_eps=cfg.adam_eps)
        return {"graph_resolved": self.learner.graphed, "compile_resolved": self.learner.compiled,
                "rollout": {"steps": cfg.rollout_steps, "envs": c.num_envs, "epochs": cfg.epochs,
                            "minibatch_size": self.learner.minibatch_size, "lr": lr}}

    def step(self) -> Collected:
        """One agent step of every env; at a full rollout's bootstrap, the epochs over it."""
        cfg, s = self.cfg, self.state
        self.epsilon = cfg.epsilon_at(s.frame)
        got = self.collector.collect(self.learner, s.frame, cfg.epsilon_at, self._learn_full_rollout)
        steps = got.steps
        self.learner.record(steps.actions[0], steps.rewards[0], steps.terminated[0], steps.truncated[0],
                            steps.frames[0])
        s.frame += got.agent_steps
        return got

    def _learn_full_rollout(self) -> None:
        learner, s = self.learner, self.state
        if not learner.rollout_full:
            return
        if self.cfg.lr_decay:  # linear to 0 at --frames, from the agent steps before this rollout (CleanRL's)
            done = s.frame - learner.steps * learner.envs
            learner.set_lr(self.cfg.lr * max(0.0, 1.0 - done / self.cfg.frames))
        total, n = learner.learn()
        s.loss_sum += total
        s.loss_n += n

    def learn(self, updates: int) -> None:
        raise TypeError("learn: a PQN run learns from its rollouts (step() runs the epochs), not from a replay")
