"""Frame stacking for acting: the last ``k`` frames of each of N envs as one tensor.

The one stacker the trainer, ``fastdqn play`` and the ``FrameStack`` gym wrapper share. Before an
episode's first frame the stack holds zeros, as the replay buffer pads (``pad="zeros"``), so the
observation the agent acts on is the one the buffer rebuilds for that transition.
"""

from __future__ import annotations

import numpy as np
import torch

STACK = 4  # frames per observation: Nature DQN's input channels


def stack_for(frame_shape: tuple) -> int:
    """Frames per observation: 4 for 2-D frames (motion needs them), 1 for vector observations
    (a state such as CartPole's already holds its velocities)."""
    return STACK if len(frame_shape) == 2 else 1


class FrameStacker:
    """``obs``: [N, k, *frame] on ``device``, of the frames' dtype (uint8 pixels, float32
    vectors); ``obs[:, -1]`` is the newest frame."""

    def __init__(self, first: np.ndarray | torch.Tensor, k: int, device: torch.device | str = "cpu"):
        first = torch.as_tensor(first)
        if first.dtype not in (torch.uint8, torch.float32) or first.dim() < 2:
            raise ValueError(f"first: expected uint8 or float32 frames [N, *frame], got {first.dtype} "
                             f"{list(first.shape)}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected an int >= 1, got {k!r}")
        self.device = torch.device(device)
        self.obs = torch.zeros((first.shape[0], k, *first.shape[1:]), dtype=first.dtype, device=self.device)
        self.obs[:, -1] = first.to(self.device)
        # On the CPU the stacks shift in place through a numpy view of obs: a push is then two
        # memcpys, where torch ops would cost more than the copy.
        self.host = self.obs.numpy() if self.device.type == "cpu" else None

    def push(self, frames, done: np.ndarray | None = None, reset_frames=None) -> None:
        """Append each env's new frame; where ``done``, start that env's stack over at its
        ``reset_frames`` entry (the first frame of its next episode). On the CPU ``obs`` changes in
        place; copy what you keep."""
        if self.host is not None:
            self.host[:, :-1] = self.host[:, 1:]  # numpy copies overlapping ranges correctly
            self.host[:, -1] = frames.numpy() if isinstance(frames, torch.Tensor) else frames
        else:
            new = torch.as_tensor(frames).to(self.device).unsqueeze(1)
            self.obs = torch.cat([self.obs[:, 1:], new], 1)
        if done is not None and done.any():
            idx = np.flatnonzero(done)
            self.restart(idx, torch.as_tensor(reset_frames)[torch.from_numpy(idx)])

    def restart(self, envs, first) -> None:
        """Begin new episodes on ``envs`` with their first frames (zeros before them)."""
        idx = torch.as_tensor(envs, dtype=torch.long)
        self.obs[idx] = 0
        self.obs[idx, -1] = torch.as_tensor(first).to(self.device)

    def load(self, obs: torch.Tensor) -> None:
        """Take saved stacks (resume); they must match this stacker's shape and dtype."""
        if not isinstance(obs, torch.Tensor) or obs.shape != self.obs.shape or obs.dtype != self.obs.dtype:
            got = f"{obs.dtype} {list(obs.shape)}" if isinstance(obs, torch.Tensor) else type(obs).__name__
            raise ValueError(f"acting stacks: expected {self.obs.dtype} {list(self.obs.shape)}, got {got}")
        self.obs = obs.to(self.device, copy=True)
        self.host = self.obs.numpy() if self.device.type == "cpu" else None
