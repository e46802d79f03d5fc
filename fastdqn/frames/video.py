"""Writing frames as video: RGB screens -> an H.264 mp4 (fastdqn play / eval, --capture-video)."""

from __future__ import annotations

import os

import numpy as np

from fastdqn.atomic import make_dirs


class Mp4Writer:
    """RGB frames -> an H.264 (yuv420p) mp4, the format browsers and W&B play, through the
    ffmpeg that the imageio-ffmpeg wheel ships. Sizes are rounded up to even (yuv420p)."""

    def __init__(self, path: str, fps: float, size: tuple[int, int], format: str | None = None):
        import imageio_ffmpeg

        self.path = path
        self.size = (size[0] + size[0] % 2, size[1] + size[1] % 2)  # (width, height)
        make_dirs(os.path.dirname(os.path.abspath(path)), "video")
        # format: the container when the name does not end in .mp4 (a .part file being written)
        extra = ["-f", format] if format else None
        self._w = imageio_ffmpeg.write_frames(path, self.size, fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                              macro_block_size=1, quality=7, output_params=extra)
        try:
            self._w.send(None)  # starts ffmpeg
        except (OSError, RuntimeError) as e:
            raise ValueError(f"video: expected a file ffmpeg can write an mp4 to, got {path!r}: {e}") from None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        if rgb.shape[1::-1] != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_NEAREST)
        self._w.send(np.ascontiguousarray(rgb))
        self.frames += 1

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None
