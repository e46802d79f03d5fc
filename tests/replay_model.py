"""A plain-Python model of the replay buffer's semantics, written from DESIGN.md, not from the C++.

Every frame ever written is kept with its stream's absolute index; the model derives which
transitions are sampleable and what their stacks hold, directly from the rules:
- a stack for t is frames t-stack+1..t of t's episode, padded before the episode's first frame;
- a transition exists once add() recorded it; done is ``terminated`` only;
- a stream keeps its last ``cap`` frames; a transition is sampleable only if every frame its
  stack and next stack need is still kept.
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
    def __init__(self, capacity, num_envs, stack, pad):
        self.stack, self.pad = stack, pad
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

    def transition(self, env, t):
        """Transition t of stream env as (obs, action, reward, next_obs, done), None if not sampleable."""
        s = self.streams[env]
        oldest = max(0, len(s.frames) - s.cap)
        if not oldest <= t < len(s.frames) - 1:
            return None
        f = s.frames[t]
        if f.transition is None or max(f.first, t - self.stack + 1) < oldest:
            return None
        action, reward, terminated, _ = f.transition
        return self._stack(s, t), action, reward, self._stack(s, t + 1), float(terminated)

    def transitions(self):
        """Every sampleable transition as (obs, action, reward, next_obs, done)."""
        return [x for e, s in enumerate(self.streams) for t in range(len(s.frames))
                if (x := self.transition(e, t)) is not None]
