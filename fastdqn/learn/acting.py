"""Greedy acting on CUDA as one CUDA-graph replay (what ``Learner.act`` uses there).

Eagerly, Nature DQN's forward at acting size is about 12 kernel launches, then ``.cpu()``
waits for them. Captured, it is one replay, the actions come back through pinned memory and the
host waits once, on an event. The graph reads the weights where they live: fused Adam and
``load_state_dict`` write the parameters in place (tests/test_learner.py checks that they stay
put), so new weights need no recapture; a new net (``Learner.online`` replaced) gets a new actor.
"""

from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import numpy as np
import torch


class _Captured(NamedTuple):
    obs: torch.Tensor      # the graph's input, which each call copies the stacks into
    q: torch.Tensor        # its Q-values (of the autocast dtype)
    actions: torch.Tensor  # int64 [N] on the device
    host: torch.Tensor     # pinned int64 [N]
    ready: torch.cuda.Event
    graph: torch.cuda.CUDAGraph


class GraphedGreedy:
    """Callable: ``net(obs).argmax(1)`` as a new int64 numpy array [N]. On CUDA one graph per
    observation shape, captured at its first call; elsewhere eager (the same ops). ``autocast``
    makes the context the forward runs in (bf16: its weight-cast cache must be off, or the capture
    would keep stale casts). ``redraw_noise``: a noisy net's ``reset_noise()`` runs before each
    forward, inside the graph, so every replay acts with new noise."""

    def __init__(self, net: torch.nn.Module, autocast: Callable = contextlib.nullcontext, *,
                 redraw_noise: bool = False):
        self.net, self.autocast, self.redraw_noise = net, autocast, bool(redraw_noise)
        self._graphs: dict = {}  # (shape, dtype) -> _Captured

    @torch.no_grad()
    def __call__(self, obs: torch.Tensor) -> np.ndarray:
        if not isinstance(obs, torch.Tensor):
            raise TypeError(f"obs: expected a torch.Tensor, got {type(obs).__name__}")
        if obs.device.type != "cuda":
            with self.autocast():
                return self._greedy(obs)[1].numpy()
        g = self._graphs.get((obs.shape, obs.dtype)) or self._capture(obs)
        g.obs.copy_(obs)  # the stacks alternate between two tensors: one copy on the device
        g.graph.replay()
        g.host.copy_(g.actions, non_blocking=True)
        g.ready.record()
        g.ready.synchronize()  # the step's one wait (the stream's earlier work, updates included, with it)
        return g.host.numpy().copy()  # host is refilled by the next call

    def _capture(self, obs: torch.Tensor) -> _Captured:
        """Warm up on a side stream (cuDNN and cuBLAS choose their kernels there), then capture."""
        static = obs.clone()
        here = torch.cuda.current_stream(obs.device)
        side = torch.cuda.Stream(obs.device)
        side.wait_stream(here)
        with torch.cuda.stream(side), self.autocast():
            for _ in range(2):
                self._greedy(static)
        here.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), self.autocast():
            q, actions = self._greedy(static)
        host = torch.empty(actions.shape, dtype=actions.dtype, pin_memory=True)
        g = self._graphs[(obs.shape, obs.dtype)] = _Captured(static, q, actions, host, torch.cuda.Event(), graph)
        return g

    def _greedy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the graph captures: new noise (``redraw_noise``), then (Q-values, argmax actions)."""
        if self.redraw_noise:
            self.net.reset_noise()
        q = self.net(obs)
        return q, q.argmax(1)
