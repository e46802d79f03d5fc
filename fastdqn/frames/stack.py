"""Frame stacking for acting: the last ``k`` frames of each of N envs as one tensor.

The one stacker the trainer, ``fastdqn play`` and the ``FrameStack`` gym wrapper share. Before an
episode's first frame the stack holds zeros, as the replay buffer pads (``pad="zeros"``), so the
observation the agent acts on is the one the buffer rebuilds for that transition.
"""

from __future__ import annotations

import numpy as np
import torch

from fastdqn.devices import upload

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
        self.obs = torch.zeros((first.shape[0], k, *first.shape[1:]), dtype=first.dtype, device=device)
        self.device = self.obs.device  # with its index: "cuda" is cuda:0 here, as on every tensor
        self.obs[:, -1] = first.to(self.device)
        self._device_buffers()

    def _device_buffers(self, host_view: bool | None = None) -> None:
        """On the CPU the stacks shift in place through a numpy view of obs: a push is then two
        memcpys, where torch ops would cost more than the copy. On a GPU a push writes a second
        stack tensor (the shifted frames plus the new ones, copied up once from pinned staging)
        and the two swap: no allocation and no torch.cat per step."""
        host_view = self.device.type == "cpu" if host_view is None else host_view  # False: tests run the GPU path
        self.host = self.obs.numpy() if host_view else None
        if self.host is None:
            cuda = self.device.type == "cuda"
            self._spare = torch.empty_like(self.obs)
            self._staging = [torch.empty(self.obs[:, -1].shape, dtype=self.obs.dtype, pin_memory=cuda)
                             for _ in range(2)]
            # a staging buffer is refilled only once its last copy up is done
            self._copied = [torch.cuda.Event() for _ in range(2)] if cuda else None
            self._pending = [False, False]
            self._turn = 0

    def push(self, frames, done: np.ndarray | None = None, reset_frames=None) -> None:
        """Append each env's new frame; where ``done``, start that env's stack over at its
        ``reset_frames`` entry (the first frame of its next episode). On the CPU ``obs`` changes in
        place; copy what you keep."""
        if self.host is not None:
            self.host[:, :-1] = self.host[:, 1:]  # numpy copies overlapping ranges correctly
            self.host[:, -1] = frames.numpy() if isinstance(frames, torch.Tensor) else frames
        else:
            self._push_device(frames)
        if done is not None and done.any():
            idx = np.flatnonzero(done)
            self.restart(idx, torch.as_tensor(reset_frames)[torch.from_numpy(idx)])

    def _push_device(self, frames) -> None:
        turn = self._turn
        staging = self._staging[turn]
        if isinstance(frames, torch.Tensor) and frames.device == self.device:
            new = frames  # already there (e.g. frames preprocessed on the GPU)
        else:
            if self._pending[turn]:
                self._copied[turn].synchronize()
            staging.numpy()[:] = frames.numpy() if isinstance(frames, torch.Tensor) else frames
            new = staging
        spare = self._spare
        spare[:, :-1].copy_(self.obs[:, 1:])
        spare[:, -1].copy_(new, non_blocking=True)
        if new is staging and self._copied is not None:
            self._copied[turn].record()
            self._pending[turn] = True
        self._turn ^= 1
        self._spare, self.obs = self.obs, spare

    def restart(self, envs, first) -> None:
        """Begin new episodes on ``envs`` with their first frames (zeros before them)."""
        idx, first = torch.as_tensor(envs, dtype=torch.long), torch.as_tensor(first)
        if self.device.type == "cuda":  # host indices or frames would cross to the GPU with a sync
            idx, first = (t if t.device == self.device else upload(t, self.device) for t in (idx, first))
        self.obs[idx] = 0
        self.obs[idx, -1] = first.to(self.device)

    def load(self, obs: torch.Tensor) -> None:
        """Take saved stacks (resume); they must match this stacker's shape and dtype."""
        if not isinstance(obs, torch.Tensor) or obs.shape != self.obs.shape or obs.dtype != self.obs.dtype:
            got = f"{obs.dtype} {list(obs.shape)}" if isinstance(obs, torch.Tensor) else type(obs).__name__
            raise ValueError(f"acting stacks: expected {self.obs.dtype} {list(self.obs.shape)}, got {got}")
        self.obs = obs.to(self.device, copy=True)
        self._device_buffers()
