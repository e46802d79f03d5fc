"""Stage 3, replay: the frame-deduplicating buffer over the C++ store, its exact save/restore,
and the GPU gather. Imports fastdqn.frames only for the CUDA tensor checks; never env or learn."""

from fastdqn.replay.buffer import Batch, ReplayBuffer

__all__ = ["Batch", "ReplayBuffer"]
