"""fastdqn: DQN on Atari at the speed the hardware allows."""

__version__ = "0.1.0"
