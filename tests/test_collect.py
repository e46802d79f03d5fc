"""The collectors the Trainer runs on (fastdqn.run.collect): which one a config gets, and that
the pipelined one (two halves of the 'ale' envs stepped in turn) stores exactly what one vector
env stores, acts on the stacks the replay rebuilds, repeats itself and resumes."""

import dataclasses

import numpy as np
import pytest
import torch

from fastdqn.learn.learner import exploration_draws
from fastdqn.run import TrainConfig, Trainer, train
from fastdqn.run.collect import LocalCollector, PipelinedCollector
from replay_helpers import stored_after

PONG_STEPS = dict(num_envs=3, eps_start=1.0, eps_final=1.0, progress=False, tensorboard=False, torch_threads=1,
                  seed=5, device="cpu", sticky_actions=0.0, max_episode_frames=401, env_backend="ale")


def _trainer(tmp_path, name, **kw) -> Trainer:
    frames = kw.pop("frames", 330)
    cfg = TrainConfig(out=str(tmp_path / name), replay_size=frames + 64, replay_start=frames + 1,
                      **(PONG_STEPS | kw))
    return Trainer(cfg, log=False)


@pytest.mark.parametrize("kw, kind", [(dict(num_workers=2, pipeline=True), PipelinedCollector),
                                      (dict(num_workers=2), LocalCollector),
                                      (dict(num_workers=1), LocalCollector),
                                      (dict(num_workers=2, env_backend="process"), LocalCollector)])
def test_the_collector_a_config_gets(tmp_path, kw, kind):
    t = _trainer(tmp_path, "c", **kw)
    try:
        assert type(t.collector) is kind and t.collector.num_envs == 3
        if kind is PipelinedCollector:  # halves of 2 and 1 envs, one emulator thread each
            assert [g.envs.num_envs for g in t.collector.groups] == [2, 1]
            assert [g.envs.num_threads for g in t.collector.groups] == [1, 1]
            assert t.config_dict["num_workers"] == 2  # the threads of both halves
    finally:
        t.close()


@pytest.mark.parametrize("kw, why", [
    (dict(env_backend="process"), "the 'process' env backend steps one vector env"),
    (dict(num_workers=1), r"each half needs an emulator thread and an env \(--num-workers 1, --num-envs 3\)"),
    (dict(overlap=False), "--no-overlap steps the envs only after")])
def test_pipeline_where_it_cannot_run_is_a_clear_error(tmp_path, kw, why):
    with pytest.raises(ValueError, match=r"pipeline: expected False, got True \(" + why):
        _trainer(tmp_path, "e", pipeline=True, **(dict(num_workers=2) | kw))


def test_pipelined_halves_store_what_one_vector_env_stores(tmp_path):
    """Random actions (epsilon 1), deterministic emulators: every stored transition is equal,
    through truncations at 401 frames, whether 3 envs step as one vector env or in two halves."""
    runs = []
    for name, pipeline in (("one", False), ("halves", True)):
        t = _trainer(tmp_path, name, num_workers=2, pipeline=pipeline)
        try:
            runs.append(stored_after(t, 330))
        finally:
            t.close()
    one, halves = runs
    assert one.keys() == halves.keys() and len(one) >= 320
    for key, a in one.items():
        for name in ("obs", "action", "reward", "next_obs", "done", "discount"):
            assert torch.equal(getattr(a, name), getattr(halves[key], name)), (key, name)


@pytest.mark.parametrize("pipeline", [False, True])
def test_each_stored_transition_is_what_the_agent_acted_on(tmp_path, pipeline):
    """Every observation the learner acted on, and its action, is the one the replay rebuilds
    for that transition, env by env, across episode ends (epsilon 0.5: greedy and random; one
    vector env sends the all-random steps ahead, acting on no frame: there, the stacks of the step)."""
    t = _trainer(tmp_path, "a", num_workers=2, pipeline=pipeline, eps_start=0.5, eps_final=0.5)
    acted: dict = {e: [] for e in range(3)}
    act, ahead = t.learner.act, []

    def spy(obs, *args):
        actions = act(obs, *args)
        group = next(g for g in t.collector.groups if g.stack.obs.data_ptr() == obs.data_ptr())
        for row, env in enumerate(group.streams):
            acted[int(env)].append((obs[row].clone(), int(actions[row])))
        return actions

    t.learner.act = spy
    try:
        while t.state.frame < 330:
            obs, before = t.collector.obs.clone(), len(acted[0])
            got = t.step()
            if not pipeline and len(acted[0]) == before:  # sent ahead by the last step
                ahead.append(t.state.frame)
                for env in range(3):
                    acted[env].append((obs[env], int(got.steps.actions[0, env])))
        assert pipeline or len(ahead) >= 5
        stored = stored_after(t, 330)
        ends = 0
        for env in range(3):
            keys = sorted(i for e, i in stored if e == env)
            ends += t.buf.frames_written()[env] - 1 - len(keys)  # frames with no transition out of them
            for n, i in enumerate(keys):
                obs, action = acted[env][n]
                assert torch.equal(stored[env, i].obs[0], obs) and stored[env, i].action.item() == action, (env, i)
        assert ends >= 3  # each stream crossed a truncation
    finally:
        t.close()


def _learned(tmp_path, name) -> tuple:
    cfg = TrainConfig(out=str(tmp_path / name), frames=400, replay_size=1000, replay_start=150, batch_size=8,
                      replay_ratio=0.5, sync_target=50, eps_decay_frames=300,
                      **(PONG_STEPS | dict(num_workers=2, pipeline=True)))
    t = Trainer(cfg, log=False)
    try:
        assert type(t.collector) is PipelinedCollector
        t.run()
        return t.learner.state_dict()["online"], t.learner.updates, t.collector.obs.clone()
    finally:
        t.close()


def test_a_seeded_pipelined_run_repeats_itself(tmp_path):
    (sd, updates, obs), (sd2, updates2, obs2) = _learned(tmp_path, "a"), _learned(tmp_path, "b")
    assert updates == updates2 > 100 and torch.equal(obs, obs2)
    for k, v in sd.items():
        assert torch.equal(sd2[k], v), k


def test_a_pipelined_run_resumes_with_its_replay(tmp_path, capsys):
    """The halves' streams restart on resume at the new games' first frames; the replay
    saved with last.pt comes back and learning goes on."""
    out = tmp_path / "run"
    common = dict(PONG_STEPS, num_workers=2, pipeline=True, save_replay=True, replay_size=2000, replay_start=150,
                  batch_size=8, eps_decay_frames=300)
    train(TrainConfig(out=str(out), frames=300, **common))
    first = train(resume=str(out), frames=450)
    assert first.frames >= 450 and "replay restored" in capsys.readouterr().out
    state = torch.load(out / "last.pt", weights_only=True)["trainer"]
    assert state["frame"] == first.frames and np.asarray(state["obs"]).shape == (3, 4, 84, 84)


# -- sending ahead: the next step starts before this one's frames are made, where all envs explore --

def _sends_ahead(t) -> list:
    """Spy on the env's recv: one entry per step, True where it sent the next step ahead."""
    envs, recv, seen = t.collector.groups[0].envs, t.collector.groups[0].envs.recv, []

    def spy(send_next=None):
        seen.append(send_next is not None)
        return recv(send_next=send_next)

    envs.recv = spy
    return seen


def _ahead_run(tmp_path, name, ahead: bool, **kw):
    """A learning run whose epsilon decays from 1 to 0 (every env explores, then some, then none)."""
    cfg = TrainConfig(out=str(tmp_path / name), frames=450, replay_size=1000, replay_start=120, batch_size=8,
                      replay_ratio=0.5, sync_target=50, **(PONG_STEPS | dict(num_workers=2, eps_final=0.0,
                                                                              eps_decay_frames=300) | kw))
    t = Trainer(cfg, log=False)
    assert t.collector.send_ahead  # the 'ale' backend, overlapped: on by default
    t.collector.send_ahead = ahead
    return t, _sends_ahead(t)


def test_sending_ahead_stores_and_learns_what_stepping_in_order_does(tmp_path):
    """Same seed, sent ahead or not: every stored transition, the acting stacks, the learned
    weights and the generator are equal, through truncations at 401 frames and the decay from
    all-random to greedy actions (acting on draws taken before the frames came)."""
    runs = []
    for name, ahead in (("in-order", False), ("ahead", True)):
        t, seen = _ahead_run(tmp_path, name, ahead)
        try:
            stored = stored_after(t, 450)
            runs.append((stored, t.collector.obs.clone(), t.learner.state_dict()["online"], t.learner.updates,
                         t.collector.state_dict()["rng"], seen))
        finally:
            t.close()
    (one, obs, sd, updates, rng, seen), (two, obs2, sd2, updates2, rng2, seen2) = runs
    assert not any(seen) and 20 <= sum(seen2) < len(seen2)  # all-random steps went ahead, the rest did not
    assert one.keys() == two.keys() and len(one) >= 430
    for key, a in one.items():
        for field in ("obs", "action", "reward", "next_obs", "done", "discount"):
            assert torch.equal(getattr(a, field), getattr(two[key], field)), (key, field)
    assert torch.equal(obs, obs2) and updates == updates2 > 100 and rng == rng2
    for k, v in sd.items():
        assert torch.equal(sd2[k], v), k


def test_a_checkpoint_keeps_the_generator_before_the_draws_taken_ahead(tmp_path):
    """The draws of a step not yet collected are the first a resumed collector draws again."""
    t, _ = _ahead_run(tmp_path, "c", True)
    try:
        t.step()
        rng = np.random.default_rng()
        rng.bit_generator.state = t.collector.state_dict()["rng"]
        uniform, actions = exploration_draws(rng, 3, t.collector.n_actions)
        assert t.collector.groups[0].in_flight and np.array_equal(actions, t.collector.groups[0].sent)
        got = t.step()
        assert np.array_equal(got.steps.actions[0], actions)
    finally:
        t.close()


def test_a_step_sent_ahead_is_collected_at_its_own_frame(tmp_path):
    t, _ = _ahead_run(tmp_path, "f", True)
    try:
        t.step()
        with pytest.raises(RuntimeError, match=r"collect: expected frame 3 \(the step sent ahead\), got 4"):
            t.collector.collect(t.learner, 4, t.cfg.epsilon_at, lambda: None)
    finally:
        t.close()


@pytest.mark.parametrize("kw", [dict(overlap=False), dict(env_backend="process"), dict(pipeline=True)])
def test_where_no_step_is_sent_ahead(tmp_path, kw):
    cfg = TrainConfig(out=str(tmp_path / "n"), replay_size=400, replay_start=401,
                      **(PONG_STEPS | dict(num_workers=2) | kw))
    t = Trainer(cfg, log=False)
    try:
        assert not t.collector.send_ahead
    finally:
        t.close()


def test_pqn_and_noisy_learners_act_on_their_frames_even_exploring():
    from fastdqn.learn.learner import Learner
    from fastdqn.learn.model import QNetSpec
    from fastdqn.learn.pqn import PQNLearner

    spec = QNetSpec(n_actions=2, obs_shape=(1, 4))
    assert Learner(spec, device="cpu").blind_exploration
    assert not Learner(dataclasses.replace(spec, noisy=True), device="cpu").blind_exploration
    assert not PQNLearner(dataclasses.replace(spec, layer_norm=True), steps=4, envs=2, device="cpu",
                          minibatches=2).blind_exploration
