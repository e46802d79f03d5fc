import os
import sys
from pathlib import Path

import numpy as np
import pytest

# Test the installed fastdqn (with its compiled _core), not the source folder that `python -m pytest`
# puts first on sys.path when run from the checkout; subprocesses get the same rule via PYTHONSAFEPATH.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
os.environ["PYTHONSAFEPATH"] = "1"
sys.path.insert(0, str(Path(__file__).parent))  # test helpers (reference models) import as modules

GAMES = ["PongNoFrameskip-v4", "BreakoutNoFrameskip-v4", "SpaceInvadersNoFrameskip-v4", "SeaquestNoFrameskip-v4"]


@pytest.fixture(scope="session")
def atari_frames():
    """Real raw frames from four ale-py games: {game: uint8 [n, 210, 160, 3]} of consecutive frames."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    out = {}
    for game in GAMES:
        env = gym.make(game)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        frames = []
        for i in range(400):
            obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
            if i % 25 >= 23:  # pairs of consecutive frames, spread over the episode
                frames.append(obs)
            if term or trunc:
                env.reset()
        env.close()
        out[game] = np.stack(frames)
    return out
