"""Play a trained checkpoint: the episode runner ``fastdqn play`` and ``fastdqn eval`` share,
and the mp4 writer."""

from __future__ import annotations

import os

import numpy as np
import torch

from fastdqn.atomic import check_output_path, make_dirs
from fastdqn.devices import resolve_device
from fastdqn.env.spec import EnvSpec, make_env_from_spec
from fastdqn.frames.stack import FrameStacker
from fastdqn.learn.model import make_q_net
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


def check_play_args(checkpoint, *, episodes, epsilon, seed, max_steps, video=None, scale=1) -> None:
    """Every argument is checked before the checkpoint is read or an emulator or video file opened."""
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


def eval_spec(cfg: dict, sticky_actions: float | None = None) -> EnvSpec:
    """The env a run's config trained on, played as the field evaluates: whole games (no
    episodic life) and raw scores (no reward clipping)."""
    return EnvSpec(cfg.get("env_id", "PongNoFrameskip-v4"), cfg.get("layout", "crop"), 4, cfg.get("noop_max", 0),
                   cfg.get("fire_reset"), False, False,
                   sticky_actions=cfg.get("sticky_actions") if sticky_actions is None else sticky_actions,
                   max_episode_frames=cfg.get("max_episode_frames"),
                   gym_packages=tuple(cfg.get("gym_packages") or ()))


def load_policy(checkpoint, device):
    """(the checkpoint's online net on ``device`` in eval mode, the checkpoint)."""
    state = load_checkpoint(checkpoint)
    model = make_q_net(state["n_actions"], tuple(state["obs_shape"])).to(device)
    try:
        model.load_state_dict(state["online"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint: expected weights of a Q-network for observations {state['obs_shape']}, "
                         f"got ones that do not fit ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, state


def play_episodes(model, env, *, episodes: int, epsilon: float, seed: int, max_steps: int | None = None,
                  on_step=None):
    """Yield (score, length, finished) of each episode played epsilon-greedily with ``model``;
    ``on_step(env)`` runs before every action (e.g. to record the screen)."""
    device = next(model.parameters()).device
    n_actions = int(env.action_space.n)
    k = model.obs_shape[0] if hasattr(model, "obs_shape") else model.in_channels
    rng = np.random.default_rng(seed)
    for ep in range(episodes):
        frame, _ = env.reset(seed=seed + ep)
        stack = FrameStacker(np.asarray(frame)[None], k, device)
        score, steps, done = 0.0, 0, False
        while not done and (max_steps is None or steps < max_steps):
            if on_step is not None:
                on_step(env)
            if rng.random() < epsilon:
                action = int(rng.integers(n_actions))
            else:
                with torch.no_grad():
                    action = int(model(stack.obs).argmax(1).item())
            frame, reward, term, trunc, _ = env.step(action)
            stack.push(np.asarray(frame)[None])
            score += float(reward)
            steps += 1
            done = term or trunc
        yield score, steps, done


def play(checkpoint: str, *, episodes: int = 3, video: str | None = None, epsilon: float = 0.0,
         seed: int = 0, device: str = "auto", max_steps: int | None = None, scale: int = 2,
         echo=print) -> list[float]:
    """Play `episodes` games with the checkpoint's online net (epsilon-greedy), print and
    return each game's score; with `video`, write every agent step's screen to an mp4."""
    check_play_args(checkpoint, episodes=episodes, epsilon=epsilon, seed=seed, max_steps=max_steps, video=video,
                    scale=scale)
    dev = resolve_device(device)
    model, state = load_policy(checkpoint, dev)
    spec = eval_spec(state["config"])
    env = make_env_from_spec(spec)
    writer = None
    try:
        if int(env.action_space.n) != state["n_actions"]:
            raise ValueError(f"checkpoint: expected {int(env.action_space.n)} actions for {spec.env_id}, "
                             f"got {state['n_actions']}")
        if video:
            first = screen(env)
            writer = Mp4Writer(video, fps=15.0 if spec.atari else 30.0,  # Atari: 60 Hz / skip 4
                               size=(first.shape[1] * scale, first.shape[0] * scale))
        record = None if writer is None else (lambda e: writer.write(screen(e)))
        scores = []
        for ep, (score, steps, done) in enumerate(play_episodes(model, env, episodes=episodes, epsilon=epsilon,
                                                                seed=seed, max_steps=max_steps, on_step=record)):
            scores.append(score)
            echo(f"episode {ep + 1}: reward {score:g} ({steps} steps{'' if done else ', cut at --max-steps'})")
    finally:
        env.close()
        if writer is not None:
            writer.close()
    if writer is not None:
        echo(f"video: {video} ({writer.frames} frames, {writer.size[0]}x{writer.size[1]})")
    return scores


def screen(env) -> np.ndarray:
    """The env's screen as RGB: ALE's full screen for Atari, the env's own RGB observation
    (or its rgb_array render) otherwise."""
    base = env.unwrapped
    if hasattr(base, "ale"):
        return base.ale.getScreenRGB()
    if hasattr(base, "screen_rgb"):
        return base.screen_rgb()
    frame = base.render()
    if frame is None:
        raise ValueError("video: expected an env that renders RGB frames (render_mode='rgb_array'), got none")
    return np.asarray(frame)
