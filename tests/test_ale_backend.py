"""The 'ale' env backend (ale-py's C++ threads + the fused kernel) against the process backend's
wrappers on the same real games, and the training loop built on it: overlapped or not, a
seeded run repeats itself."""

import numpy as np
import pytest
import torch

from fastdqn.env.ale_vector import AleVectorEnv
from fastdqn.env.backend import open_vector_env, resolve_backend
from fastdqn.env.spec import EnvSpec
from fastdqn.env.vector import VectorEnv
from fastdqn.frames.stack import FrameStacker
from fastdqn.run import TrainConfig, Trainer

PONG = "PongNoFrameskip-v4"


def _play_both(spec, steps, n=2, seed=0):
    """Step both backends with the same random actions; yield their StepResults side by side."""
    a, b = AleVectorEnv(spec, n, num_threads=2, seed=seed), VectorEnv(spec, n, seed=seed)
    try:
        np.testing.assert_array_equal(a.reset(), b.reset())
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            act = rng.integers(0, a.n_actions, n)
            yield a.step(act), b.step(act)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("layout, pool", [("crop", "rgb"), ("full", "rgb"), ("crop", "grey")])
def test_frames_rewards_and_resets_equal_the_process_backend(layout, pool):
    """Without no-ops (each side draws them from its own RNG), the two backends play the same
    deterministic game: every frame, reward, flag and episode statistic is equal, truncations
    (100 agent steps here) and their reset frames too (tests/test_atari_parity.py compares the
    stored transitions, game overs included)."""
    spec = EnvSpec(PONG, layout=layout, max_episode_frames=400, pool=pool)
    ends = 0
    for ra, rb in _play_both(spec, 230):
        for name in ("frames", "rewards", "terminated", "truncated", "episode_end"):
            np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=name)
        done = rb.truncated | rb.terminated
        np.testing.assert_array_equal(ra.reset_frames[done], rb.reset_frames[done])
        end = rb.episode_end
        np.testing.assert_array_equal(ra.episode_return[end], rb.episode_return[end])
        np.testing.assert_array_equal(ra.episode_length[end], rb.episode_length[end])
        ends += int(end.sum())
    assert ends == 4  # two truncations per env


def test_send_recv_protocol_and_bad_actions():
    with AleVectorEnv(EnvSpec(PONG), 2, num_threads=1) as venv:
        venv.reset()
        with pytest.raises(RuntimeError, match="recv: no step in flight"):
            venv.recv()
        with pytest.raises(ValueError, match=r"actions: expected values in 0\.\.5, got 0\.\.6"):
            venv.send(np.array([0, 6]))
        with pytest.raises(TypeError, match=r"actions: expected int \[2\], got float64 \[2\]"):
            venv.send(np.array([0.0, 1.0]))
        venv.send(np.array([0, 1]))
        with pytest.raises(RuntimeError, match="send: the previous step was not received yet"):
            venv.send(np.array([0, 1]))
        assert venv.recv().frames.shape == (2, 84, 84)
        assert venv.get_state() is None and not venv.snapshots
        venv.send(np.array([0, 1]))
        with pytest.raises(ValueError, match=r"actions: expected values in 0\.\.5, got 2\.\.9"):
            venv.recv(send_next=np.array([2, 9]))  # checked before the step is taken: it stays in flight
        got = venv.recv(send_next=np.array([3, 4]))
        assert got.frames.shape == (2, 84, 84) and np.array_equal(venv._actions, [3, 4])
        with pytest.raises(RuntimeError, match="send: the previous step was not received yet"):
            venv.send(np.array([0, 1]))  # the one sent ahead is
        venv.recv()
        with pytest.raises(ValueError, match="cannot restore emulator states"):
            venv.set_state([{}, {}])


def test_the_process_backend_sends_and_receives_too():
    with VectorEnv(EnvSpec(PONG), 2, num_workers=1, seed=2) as procs, VectorEnv(EnvSpec(PONG), 2, seed=2) as local:
        procs.reset()
        local.reset()
        procs.send(np.array([1, 2]))
        with pytest.raises(RuntimeError, match="send: the previous step was not received yet"):
            procs.send(np.array([1, 2]))
        got = procs.recv()
        np.testing.assert_array_equal(got.frames, local.step(np.array([1, 2])).frames)
        procs.send(np.array([3, 4]))
        procs.get_state()  # a step in flight is received first, not read as the state's reply
        np.testing.assert_array_equal(procs.reset(), local.reset())


def test_backend_choice():
    assert resolve_backend(EnvSpec(PONG)) == "ale"
    assert resolve_backend(EnvSpec("ALE/Pong-v5")) == "ale"
    assert resolve_backend(EnvSpec("CartPole-v1")) == "process"
    assert resolve_backend(EnvSpec(PONG), video=True) == "process"
    assert resolve_backend(EnvSpec(PONG), "process") == "process"
    with pytest.raises(ValueError, match="'ale' cannot run CartPole-v1: CartPole-v1 is not an Atari id"):
        resolve_backend(EnvSpec("CartPole-v1"), "ale")
    envs, backend, threads = open_vector_env(EnvSpec("ALE/Pong-v5"), 3, num_workers=2)
    with envs:
        assert (backend, threads, envs.num_threads) == ("ale", 2, 2)
        assert envs.protocol == {"frameskip": 4, "sticky_actions": 0.25, "max_episode_frames": 108_000,
                                 "noop_max": 0, "episodic_life": False, "fire_reset": False, "pool": "rgb"}


def test_the_device_stack_path_matches_the_host_path():
    """The GPU's swap-buffer push (run here on CPU tensors) equals the CPU's in-place shift."""
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (3, 84, 84), dtype=np.uint8)
    host, ring = FrameStacker(first, 4), FrameStacker(first, 4)
    ring._device_buffers(host_view=False)
    for _ in range(30):
        frames = rng.integers(0, 255, (3, 84, 84), dtype=np.uint8)
        done = rng.random(3) < 0.2
        resets = rng.integers(0, 255, (3, 84, 84), dtype=np.uint8)
        host.push(frames, done, resets)
        ring.push(frames, done, resets)
        assert torch.equal(host.obs, ring.obs)


SEEDED = dict(num_envs=2, num_workers=1, frames=500, replay_size=1000, replay_start=200, batch_size=8,
              replay_ratio=0.5, sync_target=50, eps_decay_frames=400, progress=False, tensorboard=False,
              torch_threads=1, seed=7, env_backend="ale")


def _run(tmp_path, name, **kw):
    t = Trainer(TrainConfig(out=str(tmp_path / name), **(SEEDED | kw)))
    try:
        t.run()
        return t.learner.state_dict(), t.state.loss_n, t.learner.updates, t.collector.obs.clone()
    finally:
        t.close()


def test_a_seeded_run_repeats_itself_overlapped_or_not(tmp_path):
    """The updates of step t read the replay through step t-1 in both orders, so the overlapped
    loop trains exactly like the sequential one, and twice alike."""
    runs = [_run(tmp_path, "a", overlap=True), _run(tmp_path, "b", overlap=True), _run(tmp_path, "c", overlap=False)]
    (sd, _, updates, obs) = runs[0]
    assert updates > 100  # one update per step of 2 envs from frame 200 on
    for other_sd, _, other_updates, other_obs in runs[1:]:
        assert other_updates == updates
        assert torch.equal(other_obs, obs)
        for k, v in sd["online"].items():
            assert torch.equal(other_sd["online"][k], v), k


def test_update_scale_takes_fewer_larger_batches(tmp_path):
    cfg = TrainConfig(**(SEEDED | dict(update_scale=4, out=str(tmp_path / "k"))))
    assert cfg.learning_schedule() == (32, 0.125, pytest.approx(2e-4))
    t = Trainer(cfg, log=False)
    try:
        sizes = []
        sample = t.buf.sample
        t.buf.sample = lambda b, *beta, **out: sizes.append(b) or sample(b, *beta, **out)
        while t.frame < 400:
            t.step()
        assert set(sizes) == {32} and len(sizes) == pytest.approx((400 - 200) * 0.125, abs=1)
        assert t.learner.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)
    finally:
        t.close()
