"""Q-networks: Nature DQN (Mnih et al. 2015) for stacked frames, an MLP for vector observations."""

from __future__ import annotations

import torch
from torch import nn


class NatureDQN(nn.Module):
    """conv 32x8x8/4, 64x4x4/2, 64x3x3/1, fc 512, fc n_actions; ReLU between.

    Takes uint8 [B, stack, 84, 84] and scales it by 1/255 on whatever device it is on,
    so frames cross the host/device boundary as bytes (4x fewer than float32).
    """

    def __init__(self, n_actions: int, in_channels: int = 4, frame_shape: tuple[int, int] = (84, 84)):
        super().__init__()
        if n_actions < 1:
            raise ValueError(f"n_actions: expected >= 1, got {n_actions}")
        self.n_actions, self.in_channels, self.frame_shape = n_actions, in_channels, tuple(frame_shape)
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
        self.fc = nn.Sequential(nn.Linear(n_features, 512), nn.ReLU(), nn.Linear(512, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() * (1.0 / 255.0)
        return self.fc(self.conv(x))


class MLPQNet(nn.Module):
    """Two hidden layers of ``hidden`` ReLU units for vector observations [B, stack, *shape]
    (flattened), as CleanRL's dqn.py builds it for CartPole (120, 84 there; 256, 256 here)."""

    def __init__(self, n_actions: int, obs_shape: tuple, hidden: int = 256):
        super().__init__()
        if n_actions < 1:
            raise ValueError(f"n_actions: expected >= 1, got {n_actions}")
        self.n_actions, self.obs_shape = n_actions, tuple(obs_shape)
        n_in = 1
        for d in self.obs_shape:
            n_in *= int(d)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                nn.Linear(hidden, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.float())


def make_q_net(n_actions: int, obs_shape: tuple = (4, 84, 84)) -> nn.Module:
    """The Q-network for observations of ``obs_shape`` ([stack, *frame]): Nature DQN for stacks
    of 2-D frames, the MLP for anything else."""
    obs_shape = tuple(int(d) for d in obs_shape)
    if len(obs_shape) == 3:
        return NatureDQN(n_actions, obs_shape[0], obs_shape[1:])
    return MLPQNet(n_actions, obs_shape)
