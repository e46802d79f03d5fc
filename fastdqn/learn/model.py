"""Q-networks: Nature DQN (Mnih et al. 2015) for stacked frames, an MLP for vector observations,
each with a plain or a dueling head (Wang et al. 2016), all described by one ``QNetSpec``: the
learner, play, eval and the Ray actors build their nets from it, and a checkpoint saves it as
one entry (``net``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

HEADS = ("plain", "dueling")


@dataclass(frozen=True)
class QNetSpec:
    """What a Q-network is: its actions, its observations [stack, *frame] (2-D frames: Nature
    DQN; anything else: the MLP) and its head (HEADS). ``build()`` makes one; ``to_dict()`` is
    its checkpoint entry, ``from_dict`` reads one back (ValueError naming what does not fit)."""

    n_actions: int
    obs_shape: tuple = (4, 84, 84)
    head: str = "plain"

    def __post_init__(self):
        n = self.n_actions
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n_actions: expected an int >= 1, got {n!r}")
        shape = self.obs_shape
        if not isinstance(shape, (tuple, list)) or not shape or \
                not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ValueError(f"obs_shape: expected a list of positive ints, got {shape!r}")
        object.__setattr__(self, "obs_shape", tuple(shape))
        if self.head not in HEADS:
            raise ValueError(f"head: expected one of {HEADS}, got {self.head!r}")

    def build(self) -> nn.Module:
        dueling = self.head == "dueling"
        if len(self.obs_shape) == 3:
            return NatureDQN(self.n_actions, self.obs_shape[0], self.obs_shape[1:], dueling=dueling)
        return MLPQNet(self.n_actions, self.obs_shape, dueling=dueling)

    def to_dict(self) -> dict:
        return {"n_actions": self.n_actions, "obs_shape": list(self.obs_shape), "head": self.head}

    @classmethod
    def from_dict(cls, d) -> QNetSpec:
        keys = ("n_actions", "obs_shape", "head")
        if not isinstance(d, dict) or sorted(d) != sorted(keys):
            got = sorted(map(str, d)) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"net: expected a dict with keys {list(keys)}, got {got}")
        return cls(d["n_actions"], d["obs_shape"], d["head"])


class DuelingHead(nn.Module):
    """Q = V + A - mean(A): a value stream and an advantage stream over the same features, each
    with its own hidden layer (Wang et al. 2016); subtracting the mean advantage makes V and A
    identifiable."""

    def __init__(self, n_features: int, hidden: int, n_actions: int):
        super().__init__()
        self.value = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.advantage = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.advantage(x)
        return self.value(x) + a - a.mean(1, keepdim=True)


def _head(n_features: int, hidden: int, n_actions: int, dueling: bool) -> nn.Module:
    if dueling:
        return DuelingHead(n_features, hidden, n_actions)
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))


class NatureDQN(nn.Module):
    """conv 32x8x8/4, 64x4x4/2, 64x3x3/1, fc 512, fc n_actions; ReLU between.

    Takes uint8 [B, stack, 84, 84] and scales it by 1/255 on whatever device it is on,
    so frames cross the host/device boundary as bytes (4x fewer than float32).
    """

    def __init__(self, n_actions: int, in_channels: int = 4, frame_shape: tuple[int, int] = (84, 84),
                 dueling: bool = False):
        super().__init__()
        if n_actions < 1:
            raise ValueError(f"n_actions: expected >= 1, got {n_actions}")
        self.n_actions, self.in_channels, self.frame_shape = n_actions, in_channels, tuple(frame_shape)
        self.dueling = bool(dueling)
        self.obs_shape = (in_channels, *self.frame_shape)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_features = self.conv(torch.zeros(1, in_channels, *frame_shape)).shape[1]
        self.fc = _head(n_features, 512, n_actions, dueling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() * (1.0 / 255.0)
        return self.fc(self.conv(x))


class MLPQNet(nn.Module):
    """Two hidden layers of ``hidden`` ReLU units for vector observations [B, stack, *shape]
    (flattened), as CleanRL's dqn.py builds it for CartPole (120, 84 there; 256, 256 here)."""

    def __init__(self, n_actions: int, obs_shape: tuple, hidden: int = 256, dueling: bool = False):
        super().__init__()
        if n_actions < 1:
            raise ValueError(f"n_actions: expected >= 1, got {n_actions}")
        self.n_actions, self.obs_shape, self.dueling = n_actions, tuple(obs_shape), bool(dueling)
        n_in = 1
        for d in self.obs_shape:
            n_in *= int(d)
        head = [DuelingHead(hidden, hidden, n_actions)] if dueling else [nn.Linear(hidden, hidden), nn.ReLU(),
                                                                         nn.Linear(hidden, n_actions)]
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(), *head)  # keys as before dueling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.float())
