"""Playing a policy as the field evaluates it: the env a run trained on with whole games (no
episodic life) and raw scores (no reward clipping), and the episode loop that ``fastdqn eval``,
``fastdqn play`` and ``train --eval-every`` share."""

from __future__ import annotations

import dataclasses

import numpy as np
from fastdqn.env.spec import EnvSpec
from fastdqn.frames.stack import FrameStacker
from fastdqn.learn.learner import epsilon_greedy
from fastdqn.run.config import TrainConfig


def eval_spec(cfg: dict, sticky_actions: float | None = None) -> EnvSpec:
    """The env a run's config trained on (TrainConfig.env_spec), played as the field evaluates:
    whole games (no episodic life) and raw scores (no reward clipping)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    spec = TrainConfig(**{k: v for k, v in cfg.items() if k in fields}).env_spec()
    changes = {} if sticky_actions is None else {"sticky_actions": sticky_actions}
    return dataclasses.replace(spec, episodic_life=False, clip_rewards=False, **changes)


def play_episodes(model, env, *, episodes: int, epsilon: float, seed: int, max_steps: int | None = None,
                  on_step=None):
    """Yield (score, length, finished) of each episode played epsilon-greedily with ``model``;
    ``on_step(env)`` runs before every action (e.g. to record the screen)."""
    device = next(model.parameters()).device
    n_actions = int(env.action_space.n)
    k = model.obs_shape[0]  # frames per observation
    rng = np.random.default_rng(seed)
    for ep in range(episodes):
        frame, _ = env.reset(seed=seed + ep)
        stack = FrameStacker(np.asarray(frame)[None], k, device)
        score, steps, done = 0.0, 0, False
        while not done and (max_steps is None or steps < max_steps):
            if on_step is not None:
                on_step(env)
            action = int(epsilon_greedy(model, stack.obs, n_actions, epsilon, rng)[0])
            frame, reward, term, trunc, _ = env.step(action)
            stack.push(np.asarray(frame)[None])
            score += float(reward)
            steps += 1
            done = term or trunc
        yield score, steps, done


def evaluate_policy(model, env, *, episodes: int, seed: int) -> dict:
    """Greedy episodes (epsilon 0) of ``model`` in eval mode (a noisy net's mean weights; its
    mode is restored after): mean, std, min, max of the returns, their mean length and the
    returns themselves."""
    training = model.training
    model.eval()
    try:
        played = list(play_episodes(model, env, episodes=episodes, epsilon=0.0, seed=seed))
    finally:
        model.train(training)
    returns = [score for score, _, _ in played]
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "min": float(np.min(returns)),
            "max": float(np.max(returns)), "mean_length": float(np.mean([n for _, n, _ in played])),
            "returns": returns}
