"""fastdqn: DQN on Atari at the speed the hardware allows."""

__version__ = "0.1.0"

from fastdqn.replay import Batch, ReplayBuffer  # noqa: E402

__all__ = ["Batch", "ReplayBuffer", "__version__"]
