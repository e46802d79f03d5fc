"""``RunState``: the training loop's own counters, the one interface between the Trainer and
resume (fastdqn.run.resume reads and writes them through ``to_dict``/``load_dict`` only).

Besides these, a resumable ``last.pt`` holds the components' states, each through its public
API: the learner's nets and optimizer, the envs' snapshots, the acting stacks, the RNGs and
(with ``--save-replay``) the replay buffer.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import torch


@dataclass
class RunState:
    frame: int = 0  # agent steps of all envs together
    episodes: int = 0
    returns: deque = field(default_factory=lambda: deque(maxlen=100))  # the last 100 games' scores
    all_rewards: list = field(default_factory=list)
    best: float | None = None  # best reward_100 so far
    credit: float = 0.0  # fractional gradient steps carried over (replay ratios below 1)
    due: int = 0  # gradient steps owed: sampled and applied at the start of the next step
    replay_frames: int = 0  # frames in the buffer since it was (re)filled
    last_ckpt: int = 0  # frame of the last periodic last.pt
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))  # on the device: no sync per update
    loss_n: int = 0
    t0: float = field(default_factory=time.perf_counter)  # wall clock of frame 0 (elapsed carries over)
    best_eval: float | None = None  # best mean greedy return of the evaluations (--eval-every)
    last_eval: int = 0  # frame of the last evaluation

    KEYS = ("frame", "episodes", "returns", "all_rewards", "best", "credit", "due", "last_ckpt",
            "replay_frames", "loss_sum", "loss_n", "elapsed", "best_eval", "last_eval")

    def owe_updates(self, agent_steps: int, replay_ratio: float) -> None:
        """Earn ``agent_steps * replay_ratio`` gradient steps; the whole ones become due."""
        self.credit += agent_steps * replay_ratio
        self.due = int(self.credit)
        self.credit -= self.due

    def take_due(self) -> int:
        due, self.due = self.due, 0
        return due

    def add_loss(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss
        self.loss_n += 1

    def take_mean_loss(self) -> float | None:
        """Mean TD loss since the last call (one device sync), None without updates."""
        loss = (self.loss_sum.item() / self.loss_n) if self.loss_n else None
        self.loss_sum.zero_()
        self.loss_n = 0
        return loss

    def to_dict(self) -> dict:
        """Plain values only: ``torch.load(weights_only=True)`` reads them back."""
        return {"frame": self.frame, "episodes": self.episodes, "returns": list(self.returns),
                "all_rewards": list(self.all_rewards), "best": self.best, "credit": self.credit, "due": self.due,
                "last_ckpt": self.last_ckpt, "replay_frames": self.replay_frames, "loss_sum": float(self.loss_sum),
                "loss_n": self.loss_n, "elapsed": time.perf_counter() - self.t0, "best_eval": self.best_eval,
                "last_eval": self.last_eval}

    def load_dict(self, s: dict) -> None:
        self.frame, self.episodes, self.best = int(s["frame"]), int(s["episodes"]), s["best"]
        self.returns.clear()
        self.returns.extend(s["returns"])
        self.all_rewards = list(s["all_rewards"])
        self.credit, self.due, self.last_ckpt = float(s["credit"]), int(s["due"]), int(s["last_ckpt"])
        self.replay_frames = int(s["replay_frames"])
        self.loss_sum.fill_(float(s["loss_sum"]))
        self.loss_n = int(s["loss_n"])
        self.t0 = time.perf_counter() - float(s["elapsed"])
        self.best_eval, self.last_eval = s["best_eval"], int(s["last_eval"])
