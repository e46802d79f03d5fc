"""Stage 2, preprocessing: raw Atari screens -> uint8 84x84 frames (C++, Numba, CUDA), and the
acting frame stack. Imports nothing of fastdqn but its native loader."""

from fastdqn.frames.preprocess import backends, chapter_process, process_batch, process_frame

__all__ = ["backends", "chapter_process", "process_batch", "process_frame"]
