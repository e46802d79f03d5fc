"""A pixel game for the learning tests: Catch on an Atari-sized RGB screen.

Registered as ``PixelCatch-v0`` on import, so ``fastdqn train --env PixelCatch-v0 --gym-packages
pixel_catch`` trains on it through the same fused kernel, frame-deduplicating replay and Nature
DQN as Pong (its 210x160x3 screens are Atari-sized; fastdqn's rgb family preprocesses them).

A ball falls from the top row, one row per step, drifting one column left or right per step and
bouncing off the walls. The paddle on the bottom row moves left, right or stays. A caught ball
scores +1 and the next one drops; a missed one scores -1 and ends the game (termination); a game
is cut after ``max_steps`` steps (truncation). One frame shows where the ball is but not which
way it drifts, so where it lands needs the frame stack. A random policy scores about -0.7; the
best one catches every ball: +1 per ``ROWS - 1`` steps until the cut.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ROWS, COLS = 8, 8  # cells of 26 x 20 pixels on a 210 x 160 screen (2 rows of border at the bottom)
CELL_H, CELL_W = 26, 20
PADDLE = 2  # cells wide
BALL_RGB, PADDLE_RGB = (236, 236, 236), (200, 72, 72)


class PixelCatch(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, max_steps: int = 200, render_mode: str | None = None):
        self.max_steps, self.render_mode = max_steps, render_mode
        self.observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)  # stay, left, right
        self.ball_row = self.ball_col = self.drift = self.paddle = self.steps = 0

    def _drop(self) -> None:
        self.ball_row = 0
        self.ball_col = int(self.np_random.integers(COLS))
        self.drift = int(self.np_random.choice([-1, 1]))

    def screen_rgb(self) -> np.ndarray:
        img = np.zeros((210, 160, 3), np.uint8)
        r, c = self.ball_row * CELL_H, self.ball_col * CELL_W
        img[r + 4:r + CELL_H - 4, c + 3:c + CELL_W - 3] = BALL_RGB
        r, c = (ROWS - 1) * CELL_H, self.paddle * CELL_W
        img[r + 8:r + CELL_H, c:c + PADDLE * CELL_W] = PADDLE_RGB
        return img

    def render(self):
        return self.screen_rgb() if self.render_mode == "rgb_array" else None

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        self.paddle = int(self.np_random.integers(COLS - PADDLE + 1))
        self.steps = 0
        self._drop()
        return self.screen_rgb(), {}

    def step(self, action):
        self.paddle = int(np.clip(self.paddle + (0, -1, 1)[int(action)], 0, COLS - PADDLE))
        col = self.ball_col + self.drift
        if not 0 <= col < COLS:  # bounce off the wall
            self.drift = -self.drift
            col = self.ball_col + self.drift
        self.ball_col, self.ball_row = col, self.ball_row + 1
        self.steps += 1
        reward, terminated = 0.0, False
        if self.ball_row == ROWS - 1:
            if self.paddle <= self.ball_col < self.paddle + PADDLE:
                reward = 1.0
                self._drop()
            else:
                reward, terminated = -1.0, True
        truncated = not terminated and self.steps >= self.max_steps
        return self.screen_rgb(), reward, terminated, truncated, {}


if "PixelCatch-v0" not in gym.registry:  # env workers import this module again
    gym.register("PixelCatch-v0", entry_point=PixelCatch)
