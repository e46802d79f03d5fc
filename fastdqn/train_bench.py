"""Bench cases for the trainer (groups "train" and "env" of `fastdqn bench` / bench/).

train: agent steps/s after replay start, the seeds' hyperparameters (batch 32, one update per
step, epsilon at its final 0.01), the seed-style loop against fastdqn's Trainer.step.
env: env steps/s into the replay buffer with preprocessing, fastdqn's vector path against
ale-py's AtariVectorEnv (same frame skip, max-pool, 84x84 grey, into the same buffer).
"""

from __future__ import annotations

import os

import numpy as np
import torch


def _seed_loop(cfg):
    """The seeds' 02_dqn_pong.py loop body (float32 stacks, deque of tuples, np.array
    repacking, torch.tensor(...).to(device) per field), ready after replay start."""
    from fastdqn.bench import baselines as bl

    def setup():
        device = torch.device("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        env = bl.SeedPongEnv(seed=cfg.seed)
        buf = bl.SeedReplayBuffer(cfg.replay_fill)
        net, tgt = bl.SeedDQN().to(device), bl.SeedDQN().to(device)
        tgt.load_state_dict(net.state_dict())
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        state = {"s": env.state, "i": 0}

        def agent_step(epsilon):
            s = state["s"]
            if np.random.random() < epsilon:
                action = int(np.random.randint(6))
            else:
                with torch.no_grad():
                    q = net(torch.tensor(np.asarray([s])).to(device))
                action = int(q.max(1)[1].item())
            new_s, reward, done = env.step(action)
            buf.append(bl.Experience(s, action, reward, done, new_s))
            state["s"] = new_s

        for _ in range(cfg.replay_fill):
            agent_step(1.0)

        def run():
            state["i"] += 1
            agent_step(0.01)
            if state["i"] % 1000 == 0:
                tgt.load_state_dict(net.state_dict())
            opt.zero_grad()
            batch = bl.seed_to_device(buf.sample(cfg.batch_size), device)
            bl.vectorised_loss(net, tgt, *batch).backward()
            opt.step()
        return run
    return setup


def _fast_loop(cfg, num_envs: int = 1):
    def setup():
        from fastdqn.train import TrainConfig, Trainer

        tc = TrainConfig(device=cfg.device, seed=cfg.seed, num_envs=num_envs, batch_size=cfg.batch_size,
                         replay_size=max(cfg.replay_fill, 8 * num_envs), replay_start=cfg.replay_fill,
                         eps_start=0.01, eps_final=0.01, progress=False, tensorboard=False)
        tr = Trainer(tc, log=False)
        while tr.frame < cfg.replay_fill:
            tr.step()
        tr.step()
        return tr.step
    return setup


def train_specs(cfg) -> list:
    from fastdqn.bench.model import Case, TableSpec

    dev = "cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    cases = [
        Case("seed-style loop (float32 deque, np.array repack, torch.tensor().to)", _seed_loop(cfg), role="baseline"),
        Case("fastdqn Trainer.step, 1 env", _fast_loop(cfg)),
    ]
    return [TableSpec("train", "train", "Training loop: seed-style loop vs fastdqn, agent steps/s after replay start",
                      unit="agent step", cases=cases,
                      notes=[f"Pong, {dev}, batch {cfg.batch_size}, one update per agent step, epsilon 0.01, "
                             f"replay filled with {cfg.replay_fill:,} random steps first; torch threads "
                             f"{torch.get_num_threads()}."])]


def _stepper(step, n: int, seed: int):
    actions = np.random.default_rng(seed).integers(0, 6, size=(1024, n))
    box = {"i": 0}

    def run():
        box["i"] = (box["i"] + 1) % len(actions)
        step(actions[box["i"]])
    return run


def _into_replay(n: int, seed: int):
    """A ReplayBuffer fed with add_many (and start_many on episode ends)."""
    from fastdqn import ReplayBuffer

    buf = ReplayBuffer(10_000, num_envs=n, seed=seed)

    def feed(actions, rewards, frames, term, trunc, reset_frames):
        buf.add_many(actions, rewards, frames, term, trunc)
        done = term | trunc
        if done.any():
            buf.start_many(reset_frames[done], envs=np.flatnonzero(done).tolist())
    return buf, feed


def env_specs(cfg) -> list:
    from fastdqn.bench.model import Case, TableSpec

    from fastdqn.envs import EnvSpec
    from fastdqn.vecenv import VectorEnv

    n, cores = cfg.num_envs, os.cpu_count() or 1
    live = []  # keep the envs alive while timed; workers exit with the process

    def fast(num_envs, workers):
        def setup():
            venv = VectorEnv(EnvSpec(), num_envs, num_workers=workers, seed=cfg.seed)
            live.append(venv)
            buf, feed = _into_replay(num_envs, cfg.seed)
            buf.start_many(venv.reset())

            def step(a):
                r = venv.step(a)
                feed(a, r.rewards, r.frames, r.terminated, r.truncated, r.reset_frames)
            return _stepper(step, num_envs, cfg.seed)
        return setup

    def ale(num_envs, threads):
        def setup():
            from ale_py.vector_env import AtariVectorEnv

            # Same work as ours: frame skip 4, max-pool, FIRE reset, no noops, 84x84 grey,
            # one frame per env per step (the buffer stacks), rewards unclipped.
            venv = AtariVectorEnv("pong", num_envs, num_threads=threads, stack_num=1, img_height=84,
                                  img_width=84, noop_max=0, use_fire_reset=True, reward_clipping=False,
                                  autoreset_mode="SameStep")
            live.append(venv)
            buf, feed = _into_replay(num_envs, cfg.seed)
            obs, _ = venv.reset(seed=cfg.seed)
            buf.start_many(np.ascontiguousarray(obs[:, -1]))

            def step(a):
                obs, rew, term, trunc, info = venv.step(a)
                frames = np.ascontiguousarray(obs[:, -1])
                # SameStep autoreset returns the reset frame in place of the final one.
                feed(a, rew.astype(np.float32), frames, term, trunc, frames)
            return _stepper(step, num_envs, cfg.seed)
        return setup

    cases = [
        Case(f"ale-py AtariVectorEnv, {n} envs, {cores} threads -> add_many", ale(n, cores), role="baseline", items=n),
        Case("fastdqn VectorEnv, 1 env in-process -> add_many", fast(1, 0), items=1),
        Case(f"fastdqn VectorEnv, {n} envs in-process -> add_many", fast(n, 0), items=n),
        Case(f"fastdqn VectorEnv, {n} envs, {min(n, cores)} worker processes -> add_many",
             fast(n, min(n, cores)), items=n),
    ]
    return [TableSpec("env", "env", "Env steps/s into the replay buffer: ale-py AtariVectorEnv vs fastdqn",
                      unit="env step", cases=cases,
                      notes=["Pong, random actions, frame skip 4 with max-pool, 84x84 grey (AtariVectorEnv: its "
                             "grey-then-max order, 'full' layout; fastdqn: max on RGB then luma, 'crop' layout), "
                             "each step written to a ReplayBuffer with add_many."])]
