"""The book chapter's baselines, written in this project, faithful to the patterns the
"DQN on Pong" chapter of Lapan's *Deep Reinforcement Learning Hands-On* teaches (float32
frames, deque of tuples, np.array repacking, torch.tensor(...).to(device) per field) plus the
common uint8 alternatives. They are slow on purpose: every fastdqn path is timed against them.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn

GAMMA = 0.99  # the book chapter's Pong preset
CROP_ROWS = slice(18, 102)  # ProcessFrame84 keeps rows 18..101 of 84x110


# ---------------------------------------------------------------- preprocessing
def chapter_maxpool(prev: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """MaxAndSkip's pooling: stack the last two raw frames, max over them."""
    return np.max(np.stack([prev, frame]), axis=0)


def chapter_process(frame: np.ndarray, layout: str = "crop") -> np.ndarray:
    """ProcessFrame84: float32 luma, INTER_AREA resize, crop, truncating cast."""
    img = frame.reshape(frame.shape[0], 160, 3).astype(np.float32)
    img = img[:, :, 0] * 0.299 + img[:, :, 1] * 0.587 + img[:, :, 2] * 0.114
    if layout == "crop":
        return cv2.resize(img, (84, 110), interpolation=cv2.INTER_AREA)[CROP_ROWS].astype(np.uint8)
    return cv2.resize(img, (84, 84), interpolation=cv2.INTER_AREA).astype(np.uint8)


def opencv_uint8_process(frame: np.ndarray, prev: np.ndarray | None = None, layout: str = "crop") -> np.ndarray:
    """The usual fast path without a custom kernel: uint8 cvtColor + INTER_AREA."""
    if prev is not None:
        frame = np.maximum(prev, frame)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if layout == "crop":
        return cv2.resize(grey, (84, 110), interpolation=cv2.INTER_AREA)[CROP_ROWS]
    return cv2.resize(grey, (84, 84), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- observations
class ChapterFrameStack:
    """BufferWrapper(dtype=float32) + ScaledFloatFrame: every observation is a
    fresh float32 [4,84,84] array in [0, 1] (consecutive transitions share it)."""

    def __init__(self, n_steps: int = 4):
        self.buffer = np.zeros((n_steps, 84, 84), dtype=np.float32)

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.buffer[:] = 0
        return self.observe(frame)

    def observe(self, frame: np.ndarray) -> np.ndarray:
        self.buffer[:-1] = self.buffer[1:]
        self.buffer[-1] = frame
        return np.array(self.buffer).astype(np.float32) / 255.0


# ---------------------------------------------------------------- replay
class Experience(NamedTuple):
    state: np.ndarray
    action: int
    reward: float
    done: bool
    new_state: np.ndarray


class ChapterReplayBuffer:
    """The book chapter's ExperienceBuffer: deque of tuples, np.array repacking on sample."""

    def __init__(self, capacity: int):
        self.buffer: collections.deque[Experience] = collections.deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.buffer)

    def append(self, experience: Experience) -> None:
        self.buffer.append(experience)

    def sample(self, batch_size: int):
        indices = np.random.choice(len(self.buffer), batch_size, replace=False)
        states, actions, rewards, dones, next_states = zip(*[self.buffer[i] for i in indices])
        return (np.array(states), np.array(actions), np.array(rewards, dtype=np.float32),
                np.array(dones, dtype=np.uint8), np.array(next_states))


class NumpyStackedBuffer:
    """The common alternative: preallocated uint8 arrays of stacked obs and
    next_obs (each stack stored twice, four frames each), fancy-index sampling."""

    def __init__(self, capacity: int, stack: int = 4, frame_shape: tuple[int, int] = (84, 84), seed: int = 0):
        self.capacity = capacity
        self.obs = np.zeros((capacity, stack, *frame_shape), dtype=np.uint8)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.float32)
        self.pos = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def bytes_per_transition(stack: int = 4, frame_shape: tuple[int, int] = (84, 84)) -> int:
        return 2 * stack * frame_shape[0] * frame_shape[1] + 8 + 4 + 4

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.obs, self.next_obs, self.actions, self.rewards, self.dones))

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, done) -> None:
        i = self.pos
        self.obs[i] = obs
        self.next_obs[i] = next_obs
        self.actions[i], self.rewards[i], self.dones[i] = action, reward, done
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int):
        idx = self.rng.integers(0, self.size, batch_size)
        return (torch.from_numpy(self.obs[idx]), torch.from_numpy(self.actions[idx]),
                torch.from_numpy(self.rewards[idx]), torch.from_numpy(self.next_obs[idx]),
                torch.from_numpy(self.dones[idx]))


# ---------------------------------------------------------------- model and loss
class ChapterDQN(nn.Module):
    """Nature DQN's net as the book chapter builds it (float input already scaled to [0, 1])."""

    def __init__(self, in_channels: int = 4, n_actions: int = 6):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        )
        self.fc = nn.Sequential(nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:  # fastdqn feeds uint8 and scales on the device
            x = x.float().div_(255.0)
        return self.fc(self.conv(x).view(x.shape[0], -1))


def chapter_to_device(batch, device, extra_copy: bool = False):
    """The book chapter's calc_loss prologue: torch.tensor(np.array(...)).to(device) per
    field. `extra_copy` adds one more host copy of the observation batch."""
    states, actions, rewards, dones, next_states = batch
    if extra_copy:
        states, next_states = np.array(states, copy=True), np.array(next_states, copy=True)
    states_v = torch.tensor(np.asarray(states)).to(device)
    next_states_v = torch.tensor(np.asarray(next_states)).to(device)
    actions_v = torch.tensor(actions).to(device)
    rewards_v = torch.tensor(rewards).to(device)
    done_mask = torch.BoolTensor(dones).to(device)
    return states_v, actions_v, rewards_v, done_mask, next_states_v


def list_to_device(batch, device):
    """torch.tensor on the tuple of per-sample arrays (no np.array repack)."""
    states, actions, rewards, dones, next_states = batch
    return (torch.tensor(states).to(device), torch.tensor(actions).to(device),
            torch.tensor(rewards).to(device), torch.tensor(dones, dtype=torch.bool).to(device),
            torch.tensor(next_states).to(device))


def vectorised_loss(net, tgt_net, states_v, actions_v, rewards_v, done_mask, next_states_v, gamma=GAMMA):
    """The book chapter's calc_loss body: one forward per net over the whole batch."""
    q = net(states_v).gather(1, actions_v.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        next_q = tgt_net(next_states_v).max(1)[0]
        next_q[done_mask.bool()] = 0.0
    return nn.functional.mse_loss(q, next_q * gamma + rewards_v)


def loop_loss(net, tgt_net, states_v, actions_v, rewards_v, done_mask, next_states_v, gamma=GAMMA):
    """The naive version: a Python loop, one forward of each net per sample."""
    total = 0.0
    for i in range(states_v.shape[0]):
        q = net(states_v[i:i + 1])[0, actions_v[i]]
        with torch.no_grad():
            next_q = 0.0 if bool(done_mask[i]) else tgt_net(next_states_v[i:i + 1]).max()
        total = total + (q - (rewards_v[i] + gamma * next_q)) ** 2
    return total / states_v.shape[0]


def loop_target_loss(net, tgt_net, states_v, actions_v, rewards_v, done_mask, next_states_v, gamma=GAMMA):
    """Batched forwards, but the TD target and squared error built per sample."""
    q_all = net(states_v)
    with torch.no_grad():
        next_all = tgt_net(next_states_v)
    total = 0.0
    for i in range(states_v.shape[0]):
        next_q = 0.0 if bool(done_mask[i]) else next_all[i].max()
        total = total + (q_all[i, actions_v[i]] - (rewards_v[i] + gamma * next_q)) ** 2
    return total / states_v.shape[0]


# ---------------------------------------------------------------- environment
class ChapterPongEnv:
    """The book chapter's make_env chain on gymnasium: MaxAndSkip (deque of raw frames,
    np.max over np.stack) -> FireReset -> ProcessFrame84 (float) -> float32
    frame stack scaled to [0, 1]. Auto-resets, so it can be stepped forever."""

    def __init__(self, env_id: str = "PongNoFrameskip-v4", skip: int = 4, seed: int = 0):
        import ale_py
        import gymnasium as gym

        gym.register_envs(ale_py)
        self.env = gym.make(env_id)
        self.env.reset(seed=seed)
        self.skip, self.raw = skip, collections.deque(maxlen=2)
        self.stack = ChapterFrameStack()
        self.state = self.reset()

    def _skip_step(self, action: int):
        total, done = 0.0, False
        for _ in range(self.skip):
            obs, reward, term, trunc, _ = self.env.step(action)
            self.raw.append(obs)
            total += reward
            done = term or trunc
            if done:
                break
        return np.max(np.stack(self.raw), axis=0), total, done

    def reset(self) -> np.ndarray:
        self.raw.clear()
        obs, _ = self.env.reset()
        self.raw.append(obs)
        for fire in (1, 2):  # FireReset
            obs, _, done = self._skip_step(fire)
            if done:
                obs, _ = self.env.reset()
        return self.stack.reset(chapter_process(obs))

    def step(self, action: int):
        frame, reward, done = self._skip_step(action)
        new_state = self.stack.observe(chapter_process(frame))
        if done:
            new_state = self.reset()
        return new_state, reward, done


# ---------------------------------------------------------------- training loop
class ChapterTrainLoop:
    """The book chapter's 02_dqn_pong.py loop, one agent step per ``step()``: epsilon-greedy play_step
    into the deque buffer (float32 stacks, np.array repacking), then one update with the book
    chapter's copy pattern (torch.tensor(...).to(device) per field); target sync every 1,000 steps.
    ``prefill(n)`` plays n random steps first, as the replay start does."""

    def __init__(self, replay_size: int = 10_000, device: str = "cpu", seed: int = 0, batch_size: int = 32,
                 epsilon: float = 0.01):
        import copy

        torch.manual_seed(seed)
        self.env, self.device = ChapterPongEnv(seed=seed), torch.device(device)
        self.buffer = ChapterReplayBuffer(replay_size)
        self.net = ChapterDQN().to(self.device)
        self.tgt = copy.deepcopy(self.net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-4)
        self.batch_size, self.epsilon = batch_size, epsilon
        self.rng, self.frame = np.random.default_rng(seed), 0
        self.state = self.env.state

    @torch.no_grad()
    def play_step(self, epsilon: float) -> None:
        if self.rng.random() < epsilon:
            action = int(self.rng.integers(6))
        else:
            q = self.net(torch.tensor(np.array([self.state])).to(self.device))
            action = int(q.max(1)[1].item())
        new_state, reward, done = self.env.step(action)
        self.buffer.append(Experience(self.state, action, reward, done, new_state))
        self.state = new_state  # ChapterPongEnv already reset on done

    def prefill(self, n: int) -> None:
        for _ in range(n):
            self.play_step(1.0)

    def step(self) -> None:
        self.frame += 1
        self.play_step(self.epsilon)
        if self.frame % 1_000 == 0:
            self.tgt.load_state_dict(self.net.state_dict())
        self.opt.zero_grad()
        batch = chapter_to_device(self.buffer.sample(self.batch_size), self.device)
        vectorised_loss(self.net, self.tgt, *batch).backward()
        self.opt.step()
