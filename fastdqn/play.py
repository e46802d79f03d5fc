"""Play a trained checkpoint and record it as an mp4."""

from __future__ import annotations

import os

import numpy as np
import torch

from fastdqn.atomic import check_output_path, make_dirs
from fastdqn.devices import resolve_device
from fastdqn.env.atari import EnvSpec, make_env_from_spec
from fastdqn.frames.stack import STACK, FrameStacker
from fastdqn.learn.model import NatureDQN
from fastdqn.run.checkpoint import load_checkpoint


class Mp4Writer:
    """RGB frames -> mp4 (OpenCV's mp4v encoder; imageio-ffmpeg when OpenCV cannot open it)."""

    def __init__(self, path: str, fps: float, size: tuple[int, int]):
        import cv2

        self.path, self.size = path, size  # size = (width, height)
        make_dirs(os.path.dirname(os.path.abspath(path)), "video")
        self._cv = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        self._io = None
        if not self._cv.isOpened():
            self._cv = None
            try:  # an OpenCV build without an mp4 encoder: imageio-ffmpeg, if installed
                import imageio.v2 as imageio

                self._io = imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1)
            except (ImportError, OSError, RuntimeError, ValueError) as e:
                raise ValueError(f"video: expected a file OpenCV (or imageio-ffmpeg) can write an mp4 to, "
                                 f"got {path!r}: {e}") from None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        if rgb.shape[1::-1] != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_NEAREST)
        if self._cv is not None:
            self._cv.write(np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV wants BGR
        else:
            self._io.append_data(rgb)
        self.frames += 1

    def close(self) -> None:
        if self._cv is not None:
            self._cv.release()
        if self._io is not None:
            self._io.close()


def play(checkpoint: str, *, episodes: int = 3, video: str | None = None, epsilon: float = 0.0,
         seed: int = 0, device: str = "auto", max_steps: int | None = None, scale: int = 2,
         echo=print) -> list[float]:
    """Play `episodes` games with the checkpoint's online net (epsilon-greedy), print and
    return each game's score; with `video`, write every agent step's screen to an mp4."""
    # Every argument is checked before the checkpoint is read or an emulator or video file opened.
    for name, value in (("checkpoint", checkpoint), ("video", video)):
        if not isinstance(value, (str, os.PathLike)) and not (name == "video" and value is None):
            raise TypeError(f"{name}: expected a file path, got {type(value).__name__}")
    for name, value, lo in (("episodes", episodes, 1), ("seed", seed, 0), ("max_steps", max_steps, 1),
                            ("scale", scale, 1)):
        if name == "max_steps" and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name}: expected an int >= {lo}, got {value!r}")
        if value < lo:
            raise ValueError(f"{name}: expected >= {lo}, got {value}")
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool):
        raise TypeError(f"epsilon: expected a number in [0, 1], got {epsilon!r}")
    if not 0.0 <= epsilon <= 1.0:  # NaN fails too
        raise ValueError(f"epsilon: expected a number in [0, 1], got {epsilon}")
    if video is not None:
        if not os.fspath(video).lower().endswith(".mp4"):
            raise ValueError(f"video: expected a path ending in .mp4, got {os.fspath(video)!r}")
        check_output_path(video, "video", directory=False)
    dev = resolve_device(device)
    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    # Whole games, raw scores: no episodic life, no reward clipping while playing.
    spec = EnvSpec(cfg.get("env_id", "PongNoFrameskip-v4"), cfg.get("layout", "crop"), 4,
                   cfg.get("noop_max", 0), cfg.get("fire_reset"), False, False)
    env = make_env_from_spec(spec)
    n_actions = int(env.action_space.n)
    if n_actions != state["n_actions"]:
        raise ValueError(f"checkpoint: expected {n_actions} actions for {spec.env_id}, got {state['n_actions']}")
    model = NatureDQN(n_actions).to(dev)
    model.load_state_dict(state["online"])
    model.eval()
    ale = env.unwrapped.ale
    rng = np.random.default_rng(seed)
    writer = None
    if video:
        h, w = ale.getScreenDims()
        writer = Mp4Writer(video, fps=15.0, size=(w * scale, h * scale))  # 60 Hz / skip 4
    scores = []
    try:
        for ep in range(episodes):
            frame, _ = env.reset(seed=seed + ep)
            stack = FrameStacker(frame[None], STACK, dev)
            score, steps, done = 0.0, 0, False
            while not done and (max_steps is None or steps < max_steps):
                if writer is not None:
                    writer.write(ale.getScreenRGB())
                if rng.random() < epsilon:
                    action = int(rng.integers(n_actions))
                else:
                    with torch.no_grad():
                        action = int(model(stack.obs).argmax(1).item())
                frame, reward, term, trunc, _ = env.step(action)
                stack.push(frame[None])
                score += float(reward)
                steps += 1
                done = term or trunc
            scores.append(score)
            echo(f"episode {ep + 1}: reward {score:g} ({steps} steps{'' if done else ', cut at --max-steps'})")
    finally:
        env.close()
        if writer is not None:
            writer.close()
    if writer is not None:
        echo(f"video: {video} ({writer.frames} frames, {writer.size[0]}x{writer.size[1]})")
    return scores
