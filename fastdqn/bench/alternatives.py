"""What a user would run instead of ``fastdqn train``, each in a process of its own:
``python -m fastdqn.bench.alternatives NAME --steps N ...`` runs it for N agent steps (all envs
together). The end-to-end table (groups/e2e.py) times each process twice, short and long, and
takes the difference, so startup and teardown cancel out, as they do for ``fastdqn train``. Each
also prints its own loop rate (``loop_rate STEPS SECONDS``: from its first step on, after setup),
which the quick bench uses instead, as it reads ``fastdqn train``'s f/s.

- ``atari-vector``: ale-py's AtariVectorEnv in a plain loop, random actions (env only); with
  ``--screens rgb|grey`` it makes only the raw screens fastdqn's 'ale' backend takes from it;
- ``sb3``: Stable-Baselines3's DQN on Pong (its Atari wrappers, VecFrameStack), the bench extra;
- ``cleanrl``: a CleanRL-style loop (dqn_atari.py's structure: gymnasium's AtariPreprocessing
  and FrameStackObservation, SB3's ReplayBuffer, the TD update written out);
- ``sb3-cartpole``: SB3's DQN with rl-baselines3-zoo's CartPole hyperparameters, as the
  ``cartpole`` preset has them.
Pong settings match fastdqn's defaults: no FIRE reset, no no-ops, unclipped rewards, no
episodic life, batch 32, Adam 1e-4, gamma 0.99, replay 10,000, target sync 1,000.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

PONG = "PongNoFrameskip-v4"


# --screens: AtariVectorEnv's own 84x84 grey frames, or only the raw max-pooled screens fastdqn's
# 'ale' backend asks it for (RGB by default, grey with --pool grey): that path's ceiling.
SCREENS = {"84": dict(img_height=84, img_width=84), "rgb": dict(img_height=210, img_width=160, grayscale=False),
           "grey": dict(img_height=210, img_width=160, grayscale=True)}


def atari_vector(a) -> None:
    from ale_py.vector_env import AtariVectorEnv

    venv = AtariVectorEnv("pong", a.envs, num_threads=a.threads, stack_num=1, noop_max=0, use_fire_reset=False,
                          reward_clipping=False, autoreset_mode="SameStep", **SCREENS[a.screens])
    rng = np.random.default_rng(a.seed)
    venv.reset(seed=a.seed)
    t0 = time.perf_counter()
    for _ in range(a.steps // a.envs):
        venv.step(rng.integers(0, 6, a.envs))
    venv.close()
    return t0


def _sb3_pong(a):
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from fastdqn.env.spec import _register_ale

    _register_ale()
    kw = dict(noop_max=0, terminal_on_life_loss=False, clip_reward=False)
    return VecFrameStack(make_atari_env(PONG, n_envs=a.envs, seed=a.seed, wrapper_kwargs=kw), 4)


def _updates_per_vector_step(a) -> int:
    gradient_steps = a.ratio * a.envs
    if gradient_steps != int(gradient_steps) or gradient_steps < 1:
        raise ValueError(f"ratio: expected a multiple of 1/envs={1 / a.envs:g}, got {a.ratio}")
    return int(gradient_steps)


def sb3(a) -> None:
    from stable_baselines3 import DQN

    model = DQN("CnnPolicy", _sb3_pong(a), buffer_size=10_000, learning_starts=a.start, batch_size=32,
                learning_rate=1e-4, gamma=0.99, train_freq=1, gradient_steps=_updates_per_vector_step(a),
                target_update_interval=1_000, exploration_fraction=0.1, exploration_final_eps=0.01,
                device="cpu", seed=a.seed)
    t0 = time.perf_counter()
    model.learn(total_timesteps=a.steps)
    return t0


def cleanrl(a) -> None:
    import gymnasium as gym
    import torch
    import torch.nn.functional as F
    from stable_baselines3.common.buffers import ReplayBuffer

    from fastdqn.env.spec import _register_ale
    from fastdqn.learn.model import NatureDQN

    _register_ale()

    def make():
        env = gym.make(PONG)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84)
        return gym.wrappers.FrameStackObservation(env, 4)

    envs = gym.vector.SyncVectorEnv([make for _ in range(a.envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    torch.manual_seed(a.seed)
    q, target = NatureDQN(6), NatureDQN(6)
    target.load_state_dict(q.state_dict())
    opt = torch.optim.Adam(q.parameters(), lr=1e-4)
    rb = ReplayBuffer(10_000, envs.single_observation_space, envs.single_action_space, "cpu", n_envs=a.envs,
                      optimize_memory_usage=True, handle_timeout_termination=False)
    rng = np.random.default_rng(a.seed)
    obs, _ = envs.reset(seed=a.seed)
    updates = _updates_per_vector_step(a)
    t0 = time.perf_counter()
    for step in range(0, a.steps, a.envs):
        eps = max(0.01, 1.0 - step / 100_000)
        if rng.random() < eps:
            actions = rng.integers(0, 6, a.envs)
        else:
            with torch.no_grad():
                actions = q(torch.as_tensor(obs)).argmax(1).numpy()
        next_obs, rewards, terms, truncs, infos = envs.step(actions)
        real_next = next_obs.copy()
        for i in np.flatnonzero(terms | truncs):
            real_next[i] = infos["final_obs"][i]
        rb.add(obs, real_next, actions, rewards, terms, infos)
        obs = next_obs
        if step >= a.start:
            for _ in range(updates):
                d = rb.sample(32)
                with torch.no_grad():
                    y = d.rewards.flatten() + 0.99 * target(d.next_observations).max(1).values * (1 - d.dones.flatten())
                loss = F.mse_loss(q(d.observations).gather(1, d.actions).squeeze(1), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if step // 1_000 != (step + a.envs) // 1_000:
                target.load_state_dict(q.state_dict())
    envs.close()
    return t0


def sb3_cartpole(a) -> None:
    """rl-baselines3-zoo's dqn.yml CartPole-v1 entry (the cartpole preset's source)."""
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", "CartPole-v1", learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                learning_starts=1_000, gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
                exploration_fraction=0.16, exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]),
                device="cpu", seed=a.seed)
    t0 = time.perf_counter()
    model.learn(total_timesteps=a.steps)
    return t0


RUNS = {"atari-vector": atari_vector, "sb3": sb3, "cleanrl": cleanrl, "sb3-cartpole": sb3_cartpole}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastdqn.bench.alternatives")
    p.add_argument("name", choices=sorted(RUNS))
    p.add_argument("--steps", type=int, required=True, help="agent steps, all envs together")
    p.add_argument("--envs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="atari-vector: emulator threads")
    p.add_argument("--screens", choices=sorted(SCREENS), default="84",
                   help="atari-vector: its 84x84 grey frames, or raw 210x160 RGB or grey screens only")
    p.add_argument("--ratio", type=float, default=1.0, help="gradient steps per agent step")
    p.add_argument("--start", type=int, default=1_000, help="agent steps before learning starts")
    p.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.torch_threads:
        import torch

        torch.set_num_threads(a.torch_threads)
    t0 = RUNS[a.name](a)
    print(f"loop_rate {a.steps} {time.perf_counter() - t0:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
