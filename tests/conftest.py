import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Test the installed fastdqn (with its compiled _core), not the source folder that `python -m pytest`
# puts first on sys.path when run from the checkout; subprocesses get the same rule via PYTHONSAFEPATH.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
os.environ["PYTHONSAFEPATH"] = "1"
sys.path.insert(0, str(Path(__file__).parent))  # test helpers (reference models) import as modules

GAMES = ["PongNoFrameskip-v4", "BreakoutNoFrameskip-v4", "SpaceInvadersNoFrameskip-v4", "SeaquestNoFrameskip-v4"]


@pytest.fixture(scope="session")
def atari_frames():
    """Real raw frames from four ale-py games: {game: uint8 [32, 210, 160, 3]}, 16 pairs of
    consecutive frames (previous, current) spread over the first 400 frames."""
    from fastdqn.bench.inputs import game_frames

    out = {}
    for game in GAMES:
        cur, prev = game_frames(game, n=16, seed=0, warmup=24, every=25)
        out[game] = np.stack([prev, cur], axis=1).reshape(-1, *cur.shape[1:])
    return out


@pytest.fixture(scope="session")
def atari_grey_frames():
    """The same captures as ALE's grey screens: {game: uint8 [32, 210, 160]}."""
    from fastdqn.bench.inputs import game_frames

    out = {}
    for game in GAMES:
        cur, prev = game_frames(game, n=16, seed=0, warmup=24, every=25, grey=True)
        out[game] = np.stack([prev, cur], axis=1).reshape(-1, *cur.shape[1:])
    return out


@pytest.fixture
def ieee_fp32():  # the gpu tests' comparisons of CUDA and CPU runs
    """fp32 convolutions and matmuls without TF32 (cuDNN's convolutions default to it): a CUDA run
    then differs from the CPU's only by summation order, so the comparisons can be tight."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
