"""Play a trained checkpoint: the episode runner ``fastdqn play`` and ``fastdqn eval`` share,
and the mp4 writer."""

from __future__ import annotations

import os

from fastdqn.atomic import check_output_path
from fastdqn.devices import resolve_device
from fastdqn.env.spec import make_env_from_spec
from fastdqn.env.wrappers import rgb_screen as screen
from fastdqn.errors import user_input
from fastdqn.frames.video import Mp4Writer
from fastdqn.learn.model import QNetSpec
from fastdqn.run.checkpoint import load_checkpoint
from fastdqn.run.evaluation import eval_spec, play_episodes


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


def load_policy(checkpoint, device):
    """(the checkpoint's online net on ``device`` in eval mode, the checkpoint)."""
    state = load_checkpoint(checkpoint)
    net = QNetSpec.from_dict(state["net"])  # load_checkpoint checked it
    model = net.build().to(device)
    try:
        model.load_state_dict(state["online"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint: expected weights of a Q-network for observations {list(net.obs_shape)}, "
                         f"got ones that do not fit ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, state


def open_policy(checkpoint, device, sticky_actions: float | None = None):
    """(model, checkpoint, spec, env): the checkpoint's net and the env it trained on, played as
    the field evaluates (fastdqn.run.evaluation.eval_spec); the env must have the net's actions."""
    model, state = load_policy(checkpoint, resolve_device(device))
    spec = eval_spec(state["config"], sticky_actions)
    env = make_env_from_spec(spec)
    if int(env.action_space.n) != model.n_actions:
        env.close()
        raise ValueError(f"checkpoint: expected {int(env.action_space.n)} actions for {spec.env_id}, "
                         f"got {model.n_actions}")
    return model, state, spec, env


def video_writer(env, spec, path, scale: int = 1) -> Mp4Writer:
    first = screen(env)
    return Mp4Writer(path, fps=15.0 if spec.atari else 30.0,  # Atari: 60 Hz / skip 4
                     size=(first.shape[1] * scale, first.shape[0] * scale))


def play(checkpoint: str, *, episodes: int = 3, video: str | None = None, epsilon: float = 0.0,
         seed: int = 0, device: str = "auto", max_steps: int | None = None, scale: int = 2,
         echo=print) -> list[float]:
    """Play `episodes` games with the checkpoint's online net (epsilon-greedy), print and
    return each game's score; with `video`, write every agent step's screen to an mp4."""
    with user_input():  # the arguments, the checkpoint and its env
        check_play_args(checkpoint, episodes=episodes, epsilon=epsilon, seed=seed, max_steps=max_steps, video=video,
                        scale=scale)
        model, state, spec, env = open_policy(checkpoint, device)
    writer = None
    try:
        if video:
            with user_input():  # an env with no screen to record
                writer = video_writer(env, spec, video, scale)
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
