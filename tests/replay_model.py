"""A plain-Python model of the replay buffer's semantics, written from DESIGN.md, not from the C++.

Every frame ever written is kept with its stream's absolute index; the model derives which
transitions are sampleable and what their stacks hold, directly from the rules:
- a stack for t is frames t-stack+1..t of t's episode, padded before the episode's first frame;
- a transition exists once add() recorded it; done is ``terminated`` only;
- a stream keeps its last ``cap`` frames; a transition is sampleable only if every frame its
  stack and next stack need is still kept;
- n-step returns: transition t takes k = min(n, steps to its episode's end) steps: the reward is
  sum_{i<k} gamma^i r_{t+i}, next_obs the stack at t+k, done whether t+k-1 terminated, discount
  gamma^k; it is sampleable only once transitions t..t+k-1 are all recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Frame:
    pixels: np.ndarray
    episode: int
    first: int                  # absolute index of the episode's first frame
    transition: tuple | None = None  # (action, reward, terminated, truncated)


@dataclass
class Stream:
    cap: int
    frames: list[Frame] = field(default_factory=list)
    open: bool = False


class ReplayModel:
    def __init__(self, capacity, num_envs, stack, pad, n_step=1, gamma=0.99):
        self.stack, self.pad, self.n_step, self.gamma = stack, pad, n_step, gamma
        self.streams = [Stream(capacity // num_envs + (e < capacity % num_envs)) for e in range(num_envs)]
        self.episodes = 0

    def start(self, env, frame):
        s = self.streams[env]
        self.episodes += 1
        s.frames.append(Frame(frame.copy(), self.episodes, len(s.frames)))
        s.open = True

    def add(self, env, action, reward, frame, terminated, truncated):
        s = self.streams[env]
        if not s.open:
            raise ValueError("add before start")
        last = s.frames[-1]
        last.transition = (action, np.float32(reward), terminated, truncated)
        s.frames.append(Frame(frame.copy(), last.episode, last.first))
        s.open = not (terminated or truncated)

    def _stack(self, s, t):
        first = s.frames[t].first
        out = []
        for i in range(t - self.stack + 1, t + 1):
            if i >= first:
                out.append(s.frames[i].pixels)
            elif self.pad == "repeat":
                out.append(s.frames[first].pixels)
            else:
                out.append(np.zeros_like(s.frames[t].pixels))
        return np.stack(out)

    def _steps(self, s, t):
        """k of transition t, None while t..t+k-1 are not all recorded."""
        for j in range(self.n_step):
            if t + j >= len(s.frames) or s.frames[t + j].transition is None:
                return None
            _, _, terminated, truncated = s.frames[t + j].transition
            if terminated or truncated or j == self.n_step - 1:
                return j + 1

    def transition(self, env, t):
        """Transition t of stream env as (obs, action, reward, next_obs, done, discount), None if
        not sampleable."""
        s = self.streams[env]
        oldest = max(0, len(s.frames) - s.cap)
        if not oldest <= t < len(s.frames) - 1:
            return None
        f = s.frames[t]
        if f.transition is None or max(f.first, t - self.stack + 1) < oldest:
            return None
        k = self._steps(s, t)
        if k is None:
            return None
        total, g = 0.0, 1.0
        for i in range(k):  # in float64, gamma's powers by repeated products (as the C++ sums)
            total += g * float(s.frames[t + i].transition[1])
            g *= self.gamma
        action = f.transition[0]
        terminated = s.frames[t + k - 1].transition[2]
        reward = f.transition[1] if self.n_step == 1 else np.float32(total)
        return (self._stack(s, t), action, reward, self._stack(s, t + k), float(terminated),
                float(np.float32(self.gamma ** k)))

    def transitions(self):
        """Every sampleable transition as (obs, action, reward, next_obs, done, discount)."""
        return [x for e, s in enumerate(self.streams) for t in range(len(s.frames))
                if (x := self.transition(e, t)) is not None]
