"""The seed-style baselines live in the package (fastdqn.bench.baselines) so
that an installed `fastdqn bench` has them; this module re-exports them for
code under bench/."""

from fastdqn.bench.baselines import *  # noqa: F401,F403
from fastdqn.bench.baselines import (  # noqa: F401
    Experience, NumpyStackedBuffer, SeedDQN, SeedFrameStack, SeedReplayBuffer, list_to_device,
    loop_loss, loop_target_loss, opencv_uint8_process, seed_maxpool, seed_process, seed_to_device,
    vectorised_loss,
)
