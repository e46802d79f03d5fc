"""The two env backends store the same Atari transitions: ``fastdqn train`` run twice with the
same seed and random actions (epsilon 1, no learning), once on the ``ale`` backend (ale-py's
C++ threads) and once on ``process`` (the DeepMind wrappers), with deterministic emulators (no
sticky actions). Every stored transition is read back through ``ReplayBuffer.transition`` and
compared: through game overs, lost lives and truncations at 400 and 401 frames, in both pool
orders (max of RGB screens then luma; ALE's grey screens then max).

One difference is by design, and asserted exactly: ale-py reads no screen on the frame that ends
a game, so the ale backend stores that transition's next frame blank (zeros) where the process
backend has the real screen. A game-over transition never bootstraps from it (done = 1).
"""

import numpy as np
import pytest
import torch

from fastdqn.env.ale_vector import AleVectorEnv
from fastdqn.env.backend import open_vector_env, resolve_backend
from fastdqn.env.spec import EnvSpec
from fastdqn.run import TrainConfig, Trainer
from replay_helpers import stored_after

RANDOM_STEPS = dict(num_envs=2, num_workers=1, eps_start=1.0, eps_final=1.0, progress=False, tensorboard=False,
                    torch_threads=1, seed=3, device="cpu", sticky_actions=0.0)


def _stored(tmp_path, backend: str, **kw) -> tuple[dict, dict]:
    """Every sampleable transition of a run, by (env, t), and the run's protocol."""
    frames = kw["frames"]
    cfg = TrainConfig(out=str(tmp_path / backend), env_backend=backend, replay_size=frames + 64,
                      replay_start=frames + 1, **(RANDOM_STEPS | kw))
    t = Trainer(cfg, log=False)
    try:
        assert t.config_dict["env_backend_resolved"] == backend
        return stored_after(t, frames), t.collector.protocol
    finally:
        t.close()


def _compare(tmp_path, **kw) -> dict:
    """Compare both backends' stored transitions; count what was seen."""
    ale, ale_protocol = _stored(tmp_path, "ale", **kw)
    proc, proc_protocol = _stored(tmp_path, "process", **kw)
    assert ale_protocol == proc_protocol
    assert ale.keys() == proc.keys() and len(ale) >= kw["frames"] - 8
    seen = {"game_overs": 0, "truncations": 0, "lives_lost": 0}
    for key, a in ale.items():
        p = proc[key]
        for name in ("obs", "action", "reward", "done", "discount"):
            assert torch.equal(getattr(a, name), getattr(p, name)), (key, name)
        if p.done.item():  # a game over: ale-py's last screen is unknown, stored blank
            assert torch.equal(a.next_obs[:, :-1], p.next_obs[:, :-1]), key
            assert not a.next_obs[:, -1].any() and p.next_obs[:, -1].any(), key
            seen["game_overs"] += 1
        else:
            assert torch.equal(a.next_obs, p.next_obs), key
    return seen | {"transitions": len(ale)}


def open_env(backend: str, spec: EnvSpec):
    return open_vector_env(spec, 1, backend=backend, num_workers=0, seed=5)[0]


def _episode_ends(tmp_path, **kw):
    """(terminated, truncated) counts of a process-backend run of the same settings."""
    cfg = TrainConfig(out=str(tmp_path / "ends"), env_backend="process", replay_size=kw["frames"] + 64,
                      replay_start=kw["frames"] + 1, **(RANDOM_STEPS | kw))
    t = Trainer(cfg, log=False)
    terminated = truncated = 0
    try:
        while t.state.frame < kw["frames"]:
            res = t.step()
            terminated += int(res.steps.terminated.sum())
            truncated += int(res.steps.truncated.sum())
    finally:
        t.close()
    return terminated, truncated


@pytest.mark.parametrize("cap, pool", [(400, "rgb"), (401, "rgb"), (401, "grey")])
def test_truncated_pong_is_stored_alike(tmp_path, cap, pool):
    """A cap inside an agent step (401) truncates at the end of that step on both backends: the
    truncated transition bootstraps from the step's real last screen."""
    seen = _compare(tmp_path, env_id="PongNoFrameskip-v4", max_episode_frames=cap, frames=460, pool=pool)
    assert seen["transitions"] >= 440 and seen["game_overs"] == 0
    assert _episode_ends(tmp_path, env_id="PongNoFrameskip-v4", max_episode_frames=cap, frames=460,
                         pool=pool) == (0, 4)


@pytest.mark.parametrize("pool", ["rgb", "grey"])
def test_pong_through_a_game_over_is_stored_alike(tmp_path, pool):
    seen = _compare(tmp_path, env_id="PongNoFrameskip-v4", frames=2_000, pool=pool)
    assert seen["game_overs"] >= 1


@pytest.mark.parametrize("pool", ["rgb", "grey"])
def test_breakout_through_lost_lives_and_game_overs_is_stored_alike(tmp_path, pool):
    """Without episodic life a lost life is an ordinary transition on both backends; with random
    actions (FIRE among them) a game of Breakout lasts about 200 agent steps."""
    seen = _compare(tmp_path, env_id="BreakoutNoFrameskip-v4", frames=1_200, max_episode_frames=2_000, pool=pool)
    assert seen["game_overs"] >= 4


@pytest.mark.parametrize("backend", ["ale", "process"])
def test_the_grey_pool_pools_ales_grey_screens(backend):
    """pool="grey": the max of ALE's two grey screens, then resized; not the luma of pooled RGB.
    The same steps in both orders differ where the max of two colours is not the colour of the
    max grey (Pong's moving green paddle over the brown field: up to 16 levels before the
    resize), and agree within rounding elsewhere."""
    frames = {}
    for pool in ("rgb", "grey"):
        spec = EnvSpec("PongNoFrameskip-v4", pool=pool)
        with open_env(backend, spec) as venv:
            venv.reset()
            out = [venv.step(np.array([2 + (t // 8) % 2])).frames.copy() for t in range(300)]  # up, down
        frames[pool] = np.concatenate(out)
    assert frames["rgb"].shape == frames["grey"].shape == (300, 84, 84)
    diff = np.abs(frames["rgb"].astype(int) - frames["grey"])
    assert (diff <= 1).mean() > 0.99 and diff.max() > 1


@pytest.mark.parametrize("kw, why", [
    (dict(episodic_life=True), "episodic life: the wrappers take a no-op after each lost life"),
    (dict(fire_reset=True), "FIRE reset: the wrappers press FIRE then 2 after every reset"),
    (dict(fire_reset=None), "FIRE reset"),  # None: Breakout has FIRE as action 1
    (dict(noop_max=30), "no-op resets: the wrappers draw 1..noop_max no-ops"),
])
def test_what_the_ale_backend_cannot_play_exactly_goes_to_the_process_backend(kw, why):
    spec = EnvSpec("BreakoutNoFrameskip-v4", **kw)
    assert resolve_backend(spec) == "process"
    with pytest.raises(ValueError, match=f"'ale' cannot run BreakoutNoFrameskip-v4: {why}"):
        resolve_backend(spec, "ale")
    with pytest.raises(ValueError, match=why):
        AleVectorEnv(spec, 1)


def test_the_breakout_preset_plays_the_wrappers_protocol_on_the_process_backend(tmp_path):
    from fastdqn.run.config import preset

    cfg = preset("breakout", out=str(tmp_path / "b"), frames=8, replay_start=8, progress=False, tensorboard=False,
                 device="cpu")
    t = Trainer(cfg, log=False)
    try:
        assert t.config_dict["env_backend_resolved"] == "process"
        assert t.collector.protocol | {"sticky_actions": 0.0} == {
            "frameskip": 4, "sticky_actions": 0.0, "max_episode_frames": 108_000, "noop_max": 30,
            "episodic_life": True, "fire_reset": True, "pool": "rgb"}
    finally:
        t.close()


def test_an_older_ale_py_sends_auto_to_the_process_backend(monkeypatch):
    import fastdqn.env.ale_vector as ale_vector

    monkeypatch.setattr(ale_vector, "_ale_py_version", lambda: (0, 11, 2))
    spec = EnvSpec("PongNoFrameskip-v4")
    assert resolve_backend(spec) == "process"
    with pytest.raises(ValueError, match=r"it needs ale-py >= 0\.12\.1, found 0\.11\.2"):
        resolve_backend(spec, "ale")


def test_pong_serves_without_fire():
    """Pong needs no FIRE reset (the default): with only NOOPs the opponent scores."""
    with AleVectorEnv(EnvSpec("PongNoFrameskip-v4"), 1, num_threads=1) as venv:
        venv.reset()
        rewards = [venv.step(np.zeros(1, np.int64)).rewards[0] for _ in range(300)]
    assert -1.0 in rewards
