"""The DeepMind wrappers and the vector env on real ale-py games."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from fastdqn.env.spec import EnvSpec, make_env, make_env_from_spec
from fastdqn.env.wrappers import ClipReward, EpisodicLife, FireReset, MaxAndSkip, NoopReset
from fastdqn.frames.preprocess import process_frame
from fastdqn.env.vector import VectorEnv

PONG = "PongNoFrameskip-v4"


def _raw(game=PONG):
    import ale_py

    gym.register_envs(ale_py)
    return gym.make(game)


@pytest.mark.parametrize("fast", [True, False])
def test_max_and_skip_maxpools_last_two_raw_frames_then_preprocesses(fast):
    ref = _raw()
    env = MaxAndSkip(_raw(), skip=4, layout="crop")
    if not fast:
        env._ale = None  # the generic gymnasium path
    ref.reset(seed=3)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(40):
        a = int(rng.integers(6))
        frames, total = [], 0.0
        for _ in range(4):
            o, r, term, trunc, _ = ref.step(a)
            frames.append(o)
            total += r
        obs, reward, term2, trunc2, _ = env.step(a)
        assert obs.dtype == np.uint8 and obs.shape == (84, 84)
        np.testing.assert_array_equal(obs, process_frame(frames[-1], frames[-2]))
        assert reward == total and term2 == term and trunc2 == trunc


def test_max_and_skip_rgb_layout_none():
    ref, env = _raw(), MaxAndSkip(_raw(), skip=4, layout=None)
    ref.reset(seed=1)
    env.reset(seed=1)
    frames = [ref.step(3)[0] for _ in range(4)]
    obs = env.step(3)[0]
    np.testing.assert_array_equal(obs, np.maximum(frames[-1], frames[-2]))


def test_fire_reset_presses_fire_and_rejects_games_without_it():
    env = FireReset(MaxAndSkip(_raw()))
    env.reset(seed=0)
    assert env.unwrapped.ale.getEpisodeFrameNumber() == 8  # FIRE, then action 2, four frames each
    with pytest.raises(ValueError, match="FIRE"):
        FireReset(_raw("FreewayNoFrameskip-v4"))


def test_noop_reset_takes_1_to_noop_max_raw_noops():
    env = NoopReset(_raw(), noop_max=30)
    seen = set()
    for seed in range(6):
        env.reset(seed=seed)
        n = env.unwrapped.ale.getEpisodeFrameNumber()
        assert 1 <= n <= 30
        seen.add(n)
    assert len(seen) > 1
    with pytest.raises(ValueError, match="noop_max"):
        NoopReset(_raw(), noop_max=0)


def test_episodic_life_ends_on_life_loss_and_keeps_the_game():
    env = EpisodicLife(MaxAndSkip(_raw("BreakoutNoFrameskip-v4")))
    env.reset(seed=0)
    lives = env.unwrapped.ale.lives()
    rng = np.random.default_rng(0)
    for _ in range(5000):
        _, _, term, trunc, info = env.step(int(rng.integers(4)))
        if term:
            break
    assert term and not info["game_over"]
    assert env.unwrapped.ale.lives() == lives - 1
    frame_no = env.unwrapped.ale.getEpisodeFrameNumber()
    env.reset()
    assert env.unwrapped.ale.getEpisodeFrameNumber() > frame_no  # same game goes on
    assert env.unwrapped.ale.lives() == lives - 1


def test_clip_reward_signs_and_keeps_raw():
    env = ClipReward(MaxAndSkip(_raw()))
    assert (env.reward(7.0), env.reward(-3.0), env.reward(0.0)) == (1.0, -1.0, 0.0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        _, r, term, trunc, info = env.step(int(rng.integers(6)))
        assert r in (-1.0, 0.0, 1.0) and r == np.sign(info["raw_reward"])
        if info["raw_reward"] != 0:
            break
    assert info["raw_reward"] != 0


def test_frame_stack_uint8_zero_padded():
    env = make_env(PONG, frame_stack=4, seed=0)
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and not obs[:3].any() and obs[3].any()
    obs2, *_ = env.step(0)
    np.testing.assert_array_equal(obs2[2], obs[3])
    assert not obs2[:2].any()


def test_make_env_presets_and_validation():
    env = make_env(PONG)
    names = []
    e = env
    while isinstance(e, gym.Wrapper):
        names.append(type(e).__name__)
        e = e.env
    assert names[:1] == ["MaxAndSkip"]  # Pong: no FIRE reset (it serves by itself)
    assert isinstance(make_env(PONG, fire_reset=None), FireReset)  # None: FIRE is Pong's action 1
    b = make_env("BreakoutNoFrameskip-v4", noop_max=30, fire_reset=True, episodic_life=True, clip_rewards=True)
    assert isinstance(b, ClipReward) and isinstance(b.env, FireReset) and isinstance(b.env.env, EpisodicLife)
    with pytest.raises(ValueError, match="Discrete action space"):
        make_env("MountainCarContinuous-v0")
    with pytest.raises(ValueError, match="layout"):
        make_env(PONG, layout="square")


def test_vector_env_workers_match_in_process_and_auto_reset():
    spec = EnvSpec(PONG)
    local = VectorEnv(spec, 2, num_workers=0, seed=5)
    with VectorEnv(spec, 2, num_workers=2, seed=5) as procs:
        np.testing.assert_array_equal(local.reset(), procs.reset())
        rng = np.random.default_rng(0)
        ended = 0
        for _ in range(3000):
            a = rng.integers(0, 6, 2)
            r1, r2 = local.step(a), procs.step(a)
            for f in ("frames", "rewards", "terminated", "truncated", "episode_end"):
                np.testing.assert_array_equal(getattr(r1, f), getattr(r2, f))
            done = r1.terminated | r1.truncated
            if done.any():
                i = int(np.flatnonzero(done)[0])
                np.testing.assert_array_equal(r1.reset_frames[i], r2.reset_frames[i])
                assert r1.episode_end[i] and r1.episode_return[i] <= 21 and r1.episode_length[i] > 100
                ended += 1
                break
        assert ended
        with pytest.raises(ValueError, match="actions"):
            procs.step(np.array([0, 9]))
    local.close()


def test_a_dead_worker_is_an_error_naming_it_not_a_hang():
    """Killed before a command (the send fails) or dying while the parent waits (EOF)."""
    import os
    import signal
    import threading
    import time

    from fastdqn.env.vector import WorkerDied

    with VectorEnv(EnvSpec(PONG), 3, num_workers=2) as venv:
        venv.reset()
        os.kill(venv._procs[1].pid, signal.SIGKILL)
        with pytest.raises(WorkerDied, match=r"^vector env worker 1 \(envs 1\.\.2\) was killed by SIGKILL \(SIGKILL is often the out-of-memory killer\)$"):
            venv.step(np.zeros(3, int))
    with VectorEnv(EnvSpec(PONG), 2, num_workers=2) as venv:
        venv.reset()
        killer = threading.Timer(0.3, os.kill, (venv._procs[0].pid, signal.SIGKILL))
        killer.start()  # lands while the parent sends or waits for a reply: both paths end the same way
        deadline = time.monotonic() + 30
        with pytest.raises(WorkerDied, match=r"^vector env worker 0 \(envs 0\.\.0\) was killed by SIGKILL"):
            while time.monotonic() < deadline:
                venv.step(np.zeros(2, int))
        killer.join()
    assert venv._procs == []  # closed: workers joined, shared memory unlinked


def test_vector_env_set_state_checks_every_state_before_any_env_changes():
    for workers in (0, 1):
        with VectorEnv(EnvSpec(PONG), 2, num_workers=workers) as venv:
            venv.reset()
            good = venv.get_state()
            bad_type = [good[0], {"not": "a state"}]
            with pytest.raises(TypeError, match=r"env states\[1\]: expected a dict from get_state\(\) with 'ale' "
                                                r"bytes, got keys \['not'\]"):
                venv.set_state(bad_type)
            missing = [good[0], {k: v for k, v in good[1].items() if k != "np_random"}]
            with pytest.raises(ValueError, match=r"env states\[1\]: .* got one missing \['np_random'\]"):
                venv.set_state(missing)
            assert [s["ale"] for s in venv.get_state()] == [s["ale"] for s in good]  # workers alive, nothing changed


def test_single_env_matches_vector_env():
    env = make_env_from_spec(EnvSpec(PONG))
    venv = VectorEnv(EnvSpec(PONG), 1, seed=7)
    obs, _ = env.reset(seed=7)
    np.testing.assert_array_equal(venv.reset()[0], obs)
    for a in [0, 2, 3, 1, 4, 5] * 5:
        obs, r, *_ = env.step(a)
        res = venv.step(np.array([a]))
        np.testing.assert_array_equal(res.frames[0], obs)
    venv.close()


# -- any gymnasium env: families, the ALE v5 protocol, gymnasium's conventions -------------------
FAMILIES = [  # (env id, make_env kwargs, observation shape, dtype)
    ("PongNoFrameskip-v4", {}, (84, 84), np.uint8),
    ("ALE/Pong-v5", {}, (84, 84), np.uint8),
    ("BreakoutNoFrameskip-v4", dict(noop_max=30, episodic_life=True, clip_rewards=True, frame_stack=4), (4, 84, 84),
     np.uint8),
    ("CartPole-v1", {}, (4,), np.float32),
    ("Acrobot-v1", {}, (6,), np.float32),
    ("PixelCatch-v0", dict(gym_packages=("pixel_catch",)), (84, 84), np.uint8),
]


@pytest.mark.parametrize("env_id, kw, shape, dtype", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_every_env_family_passes_gymnasiums_env_checker(env_id, kw, shape, dtype):
    from gymnasium.utils.env_checker import check_env

    env = make_env(env_id, **kw)
    assert env.observation_space.shape == shape and env.observation_space.dtype == dtype
    check_env(env, skip_render_check=True)  # includes: env.spec rebuilds it, seeded resets repeat
    again = gym.make(env.spec)  # the wrappers recorded their arguments
    assert [type(w).__name__ for w in _chain(again)] == [type(w).__name__ for w in _chain(env)]
    env.close()


def _chain(env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env


@pytest.mark.parametrize("env_id, kw, sticky, frames", [
    ("ALE/Pong-v5", {}, 0.25, 108_000),  # v5 keeps its protocol
    ("PongNoFrameskip-v4", {}, 0.0, None),  # v4: no sticky actions (frames: ale-py's default)
    ("ALE/Pong-v5", dict(sticky_actions=0.0, max_episode_frames=5000), 0.0, 5000),
    ("PongNoFrameskip-v4", dict(sticky_actions=0.25, max_episode_frames=20_000), 0.25, 20_000),
])
def test_ale_protocol_is_kept_unless_changed(env_id, kw, sticky, frames):
    from fastdqn.env.spec import EnvSpec, played_protocol

    env = make_env(env_id, **kw)
    played = played_protocol(env, EnvSpec(env_id, **kw))
    assert played["sticky_actions"] == sticky and played["frameskip"] == 4
    if frames is not None:
        assert played["max_episode_frames"] == frames
    assert env.unwrapped._frameskip == 1  # the 4 skipped frames are MaxAndSkip's (and max-pooled)
    env.close()


def test_vector_env_of_a_vector_observation_env_feeds_a_float32_replay():
    from fastdqn import ReplayBuffer

    with VectorEnv(EnvSpec("CartPole-v1"), 3, num_workers=1, seed=0) as venv:
        assert venv.frame_shape == (4,) and venv.frame_dtype == np.float32 and venv.protocol == {}
        buf = ReplayBuffer(300, num_envs=3, frame_shape=venv.frame_shape, stack=1, dtype="float32", seed=0)
        buf.start_many(venv.reset())
        ends = 0
        for _ in range(60):
            a = np.random.default_rng(0).integers(0, 2, 3)
            r = venv.step(a)
            buf.add_many(a, r.rewards, r.frames, r.terminated, r.truncated)
            done = r.terminated | r.truncated
            if done.any():
                buf.start_many(r.reset_frames[done], envs=np.flatnonzero(done))
            ends += int(done.sum())
        assert ends > 0 and len(buf) > 0
        b = buf.sample(16)
        assert b.obs.dtype == torch.float32 and b.obs.shape == (16, 1, 4)


def test_gym_packages_register_envs_in_every_worker():
    """pixel_catch registers PixelCatch-v0 on import: the spec imports it in each worker process."""
    with VectorEnv(EnvSpec("PixelCatch-v0", gym_packages=("pixel_catch",)), 2, num_workers=2, seed=0) as venv:
        frames = venv.reset()
        assert frames.shape == (2, 84, 84) and frames.any()
        venv.step(np.array([1, 2]))


def test_an_env_needing_a_missing_package_says_so():
    try:
        import Box2D  # noqa: F401
        pytest.skip("Box2D is installed here")
    except ImportError:
        pass
    with pytest.raises(ValueError, match=r"env_id: 'LunarLander-v3' needs a package that is not installed \(Box2D"):
        make_env("LunarLander-v3")
