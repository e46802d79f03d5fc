"""Every bad input to the run-level API in one table: envs, TrainConfig, the CLI, checkpoints.

Each case must raise ValueError/TypeError (FileNotFoundError for a missing file) whose message
names what was expected and what came (the regex matches both), and must leave state unchanged:
a VectorEnv keeps its last frames and steps on exactly like an untouched twin, a config keeps its
fields, a Learner keeps its online/target/optimizer tensors (a bad target or optimizer part must
not leave a half-loaded learner), a rejected `fastdqn train` writes no file, a rejected `play`
writes no video, and a malicious pickle never runs. CLI mistakes exit non-zero with one error
line on stderr and no traceback.

Long by design: the tables are the point (one row per rejected input, read top to bottom), and
splitting them would scatter the one place that says what fastdqn refuses.
"""

import copy
import math
import multiprocessing as mp
import os
import pickle
import re

import numpy as np
import pytest
import torch

from fastdqn.run.checkpoint import load_checkpoint, save_checkpoint
from fastdqn.cli import main
from fastdqn.env.spec import EnvSpec, make_env, make_env_from_spec
from fastdqn.learn.learner import Learner
from fastdqn.learn.model import QNetSpec
from fastdqn.play import play
from fastdqn.run import TrainConfig, preset, train
from fastdqn.env.vector import VectorEnv

PONG = "PongNoFrameskip-v4"
NAN, INF = float("nan"), float("inf")


def rows(table):
    """(id, *args) -> pytest.param(*args, id=id)."""
    return [pytest.param(*r[1:], id=r[0]) for r in table]


# -- 1. envs: make_env / make_env_from_spec / EnvSpec / VectorEnv ---------------------------------
ENVS = [
    ("unknown game", lambda: make_env("NoSuchGameNoFrameskip-v4"), ValueError,
     "env_id: expected a registered Atari id, got 'NoSuchGameNoFrameskip-v4'"),
    ("unknown ALE game", lambda: make_env("ALE/NoSuch-v5"), ValueError, "registered Atari id, got 'ALE/NoSuch-v5'"),
    ("unknown version", lambda: make_env("PongNoFrameskip-v9"), ValueError, "registered Atari id, got 'Pong.*-v9'"),
    ("unknown gymnasium id", lambda: make_env("NoSuchEnv-v0"), ValueError,
     "env_id: expected a registered gymnasium id, got 'NoSuchEnv-v0'"),
    ("continuous actions", lambda: make_env("MountainCarContinuous-v0"), ValueError,
     "env_id: expected an env with a Discrete action space"),
    ("gym package missing", lambda: make_env("CartPole-v1", gym_packages=("no_such_module",)), ValueError,
     "gym_packages: expected importable modules, got 'no_such_module'"),
    ("gym packages str", lambda: make_env("CartPole-v1", gym_packages="abc"), TypeError,
     "gym_packages: expected a tuple of module names, got 'abc'"),
    ("sticky 2", lambda: make_env(PONG, sticky_actions=2.0), ValueError,
     r"sticky_actions: expected a probability in \[0, 1\] or None, got 2.0"),
    ("max frames 0", lambda: make_env(PONG, max_episode_frames=0), ValueError,
     "max_episode_frames: expected an int >= 1, got 0"),
    ("env_id int", lambda: make_env(3), TypeError, r"env_id: expected a gymnasium id \(a str\), got 3"),
    ("layout", lambda: make_env(PONG, layout="square"), ValueError, "layout: expected 'crop', 'full' or None, got 'square'"),
    ("layout int", lambda: make_env(PONG, layout=3), ValueError, "layout: expected 'crop', 'full' or None, got 3"),
    ("skip 0", lambda: make_env(PONG, skip=0), ValueError, "skip: expected an int >= 1, got 0"),
    ("skip negative", lambda: make_env(PONG, skip=-2), ValueError, "skip: expected an int >= 1, got -2"),
    ("skip float", lambda: make_env(PONG, skip=1.5), TypeError, "skip: expected an int >= 1, got 1.5"),
    ("skip bool", lambda: make_env(PONG, skip=True), TypeError, "skip: expected an int >= 1, got True"),
    ("noop_max negative", lambda: make_env(PONG, noop_max=-1), ValueError, "noop_max: expected an int >= 0, got -1"),
    ("noop_max float", lambda: make_env(PONG, noop_max=3.0), TypeError, "noop_max: expected an int >= 0, got 3.0"),
    ("frame_stack negative", lambda: make_env(PONG, frame_stack=-1), ValueError, "frame_stack: expected an int >= 0, got -1"),
    ("frame_stack float", lambda: make_env(PONG, frame_stack=2.0), TypeError, "frame_stack: expected an int >= 0, got 2.0"),
    ("fire_reset str", lambda: make_env(PONG, fire_reset="yes"), TypeError, "fire_reset: expected a bool or None, got 'yes'"),
    ("episodic_life None", lambda: make_env(PONG, episodic_life=None), TypeError, "episodic_life: expected a bool, got None"),
    ("clip_rewards int", lambda: EnvSpec(clip_rewards=1), TypeError, "clip_rewards: expected a bool, got 1"),
    ("seed negative", lambda: make_env(PONG, seed=-1), ValueError, "seed: expected an int >= 0 or None, got -1"),
    ("seed float", lambda: make_env(PONG, seed=1.5), TypeError, "seed: expected an int >= 0 or None, got 1.5"),
    ("spec str", lambda: make_env_from_spec(PONG), TypeError, "spec: expected an EnvSpec, got str"),
    ("EnvSpec skip 0", lambda: EnvSpec(skip=0), ValueError, "skip: expected an int >= 1, got 0"),
    ("EnvSpec id", lambda: EnvSpec(""), TypeError, r"env_id: expected a gymnasium id \(a str\), got ''"),
    ("vec num_envs 0", lambda: VectorEnv(EnvSpec(), 0), ValueError, "num_envs: expected >= 1, got 0"),
    ("vec num_envs -1", lambda: VectorEnv(EnvSpec(), -1), ValueError, "num_envs: expected >= 1, got -1"),
    ("vec num_envs float", lambda: VectorEnv(EnvSpec(), 2.0), TypeError, "num_envs: expected an int, got 2.0"),
    ("vec num_workers > envs", lambda: VectorEnv(EnvSpec(), 2, num_workers=3), ValueError,
     "num_workers: expected 0..num_envs=2, got 3"),
    ("vec num_workers -1", lambda: VectorEnv(EnvSpec(), 2, num_workers=-1), ValueError,
     "num_workers: expected 0..num_envs=2, got -1"),
    ("vec num_workers float", lambda: VectorEnv(EnvSpec(), 2, num_workers=1.0), TypeError,
     "num_workers: expected an int, got 1.0"),
    ("vec seed -1", lambda: VectorEnv(EnvSpec(), 1, seed=-1), ValueError, "seed: expected >= 0, got -1"),
    ("vec spec str", lambda: VectorEnv(PONG, 1), TypeError, "spec: expected an EnvSpec, got str"),
    ("vec RGB layout", lambda: VectorEnv(EnvSpec(layout=None), 1), ValueError,
     "expected layout 'crop' or 'full' and frame_stack 0 .*got layout=None"),
    ("vec frame_stack", lambda: VectorEnv(EnvSpec(frame_stack=4), 1), ValueError, "frame_stack 0 .*got .*frame_stack=4"),
]


@pytest.mark.parametrize("call, error, match", rows(ENVS))
def test_env_bad_input_raises(call, error, match):
    workers = mp.active_children()
    with pytest.raises(error, match=match):
        call()
    assert mp.active_children() == workers  # no worker process left behind


STEP = [  # (id, actions for 2 Pong envs, error, regex)
    ("length 3", np.zeros(3, np.int64), ValueError, r"actions: expected int \[2\], got int64 \[3\]"),
    ("2-D", np.zeros((2, 1), np.int64), ValueError, r"expected int \[2\], got int64 \[2, 1\]"),
    ("scalar", 0, ValueError, r"expected int \[2\], got int64 \[\]"),
    ("float", np.array([0.0, 1.0]), TypeError, r"expected int \[2\], got float64 \[2\]"),
    ("bool", np.array([True, False]), TypeError, r"expected int \[2\], got bool \[2\]"),
    ("str", ["0", "1"], TypeError, r"expected int \[2\], got <U1 \[2\]"),
    ("None", None, TypeError, r"expected int \[2\], got object \[\]"),
    ("out of range", np.array([0, 6]), ValueError, r"actions: expected values in 0\.\.5, got 0\.\.6"),
    ("negative", np.array([-1, 0]), ValueError, r"expected values in 0\.\.5, got -1\.\.0"),
    ("huge", np.array([2**40, 0]), ValueError, r"expected values in 0\.\.5, got 0\.\.1099511627776"),
]


@pytest.fixture(scope="module")
def twins():
    """Two identically seeded 2-env Pong vectors: one gets the bad calls, the other none."""
    pair = [VectorEnv(EnvSpec(PONG), 2, num_workers=0, seed=3) for _ in range(2)]
    for v in pair:
        v.reset()
    yield pair
    for v in pair:
        v.close()


@pytest.mark.parametrize("actions, error, match", rows(STEP))
def test_vector_step_bad_actions_change_nothing(twins, actions, error, match):
    venv, twin = twins
    res = venv.step(np.array([2, 3]))
    twin.step(np.array([2, 3]))  # the twin stays in step
    before = [np.copy(x) for x in res] + [venv._v["actions"].copy()]
    with pytest.raises(error, match=match):
        venv.step(actions)
    for a, b in zip(before, list(res) + [venv._v["actions"]]):
        np.testing.assert_array_equal(a, b)  # the last returned views are untouched
    for x, y in zip(venv.step(np.array([1, 4])), twin.step(np.array([1, 4]))):
        np.testing.assert_array_equal(x, y)  # and the env goes on as if nothing happened


# -- 2. TrainConfig.validate() and preset() -----------------------------------------------------------
CONFIG = [  # (id, fields, error, regex)
    *[(f"{k} {v!r}", {k: v}, ValueError, rf"{k}: expected an integer >= 1, got {v}") for k, v in
      [("num_envs", 0), ("batch_size", 0), ("batch_size", -32), ("replay_size", 0), ("replay_start", 0),
       ("sync_target", -1), ("checkpoint_every", 0)]],
    *[(f"{k} {v!r}", {k: v}, TypeError, rf"{k}: expected an integer >= 1, got {v!r}") for k, v in
      [("batch_size", 1.5), ("batch_size", True), ("batch_size", None), ("replay_size", "10k"),
       ("checkpoint_every", 1e5), ("num_envs", 2.0)]],
    ("frames 0", dict(frames=0), ValueError, "frames: expected an integer >= 1 or None, got 0"),
    ("frames -5", dict(frames=-5), ValueError, "frames: expected an integer >= 1 or None, got -5"),
    ("frames float", dict(frames=1e6), TypeError, "frames: expected an integer >= 1 or None, got 1000000.0"),
    ("frames bool", dict(frames=True), TypeError, "frames: expected an integer >= 1 or None, got True"),
    ("batch > replay", dict(batch_size=64, replay_size=32), ValueError, "batch_size: expected <= replay_size=32, got 64"),
    ("envs > replay/8", dict(num_envs=20, replay_size=100), ValueError, "num_envs: expected <= replay_size/8=12, got 20"),
    *[(f"{k} {v!r}", {k: v}, ValueError, rf"{k}: expected {w}, got {re.escape(repr(v))}") for k, w, v in
      [("lr", "a finite number > 0", 0.0), ("lr", "a finite number > 0", -1), ("lr", "a finite number > 0", NAN),
       ("lr", "a finite number > 0", INF), ("gamma", r"a number in \[0, 1\]", 1.5),
       ("gamma", r"a number in \[0, 1\]", -0.1), ("gamma", r"a number in \[0, 1\]", NAN),
       ("eps_start", r"a number in \[0, 1\]", 1.5), ("eps_final", r"a number in \[0, 1\]", -0.01),
       ("eps_start", r"a number in \[0, 1\]", NAN), ("replay_ratio", "a finite number > 0", 0),
       ("replay_ratio", "a finite number > 0", -1.0), ("replay_ratio", "a finite number > 0", NAN),
       ("replay_ratio", "a finite number > 0", INF), ("reward_bound", "a finite number or None", NAN),
       ("reward_bound", "a finite number or None", -INF)]],
    ("lr str", dict(lr="1e-4"), TypeError, "lr: expected a finite number > 0, got '1e-4'"),
    ("lr None", dict(lr=None), TypeError, "lr: expected a finite number > 0, got None"),
    ("gamma None", dict(gamma=None), TypeError, r"gamma: expected a number in \[0, 1\], got None"),
    ("eps_final bool", dict(eps_final=True), TypeError, r"eps_final: expected a number in \[0, 1\], got True"),
    ("replay_ratio None", dict(replay_ratio=None), TypeError, "replay_ratio: expected a finite number > 0, got None"),
    ("reward_bound str", dict(reward_bound="19"), TypeError, "reward_bound: expected a finite number or None, got '19'"),
    ("eps_decay_frames -1", dict(eps_decay_frames=-1), ValueError, "eps_decay_frames: expected an integer >= 0, got -1"),
    ("eps_decay_frames float", dict(eps_decay_frames=1.5), TypeError, "eps_decay_frames: expected an integer >= 0, got 1.5"),
    ("noop_max -1", dict(noop_max=-1), ValueError, "noop_max: expected an integer >= 0, got -1"),
    ("torch_threads 0", dict(torch_threads=0), ValueError, "torch_threads: expected an integer >= 1 or None, got 0"),
    ("torch_threads float", dict(torch_threads=1.5), TypeError, "torch_threads: expected an integer >= 1 or None, got 1.5"),
    ("torch_threads bool", dict(torch_threads=True), TypeError, "expected an integer >= 1 or None, got True"),
    ("num_workers -1", dict(num_workers=-1), ValueError, "num_workers: expected an integer >= 0 or None, got -1"),
    ("num_workers > envs", dict(num_workers=2), ValueError, "num_workers: expected 0..num_envs=1, got 2"),
    ("num_workers float", dict(num_workers=1.5), TypeError, "num_workers: expected an integer >= 0 or None, got 1.5"),
    ("seed -1", dict(seed=-1), ValueError, r"seed: expected an integer in \[0, 2\*\*63\), got -1"),
    ("seed 2**64", dict(seed=2**64), ValueError, r"seed: expected an integer in \[0, 2\*\*63\), got 18446744073709551616"),
    ("seed float", dict(seed=1.5), TypeError, r"seed: expected an integer in \[0, 2\*\*63\), got 1.5"),
    ("seed bool", dict(seed=False), TypeError, r"seed: expected an integer in \[0, 2\*\*63\), got False"),
    ("loss", dict(loss="l1"), ValueError, r"loss: expected one of \('mse', 'huber'\), got 'l1'"),
    ("loss None", dict(loss=None), TypeError, "loss: expected a str, got None"),
    ("layout", dict(layout="square"), ValueError, r"layout: expected one of \('crop', 'full'\), got 'square'"),
    ("layout None", dict(layout=None), TypeError, "layout: expected a str, got None"),
    ("device tpu", dict(device="tpu"), ValueError, "device: expected 'auto', 'cpu' or 'cuda', got 'tpu'"),
    ("device None", dict(device=None), TypeError, "device: expected 'auto', 'cpu' or 'cuda', got None"),
    ("env_id int", dict(env_id=3), TypeError, "env_id: expected a str, got 3"),
    ("env_id empty", dict(env_id=""), TypeError, r"env_id: expected a gymnasium id \(a str\), got ''"),
    ("out int", dict(out=3), TypeError, "out: expected a directory path or None, got 3"),
    ("double str", dict(double="yes"), TypeError, "double: expected a bool, got 'yes'"),
    ("tensorboard int", dict(tensorboard=0), TypeError, "tensorboard: expected a bool, got 0"),
    ("progress None", dict(progress=None), TypeError, "progress: expected a bool, got None"),
    ("episodic_life None", dict(episodic_life=None), TypeError, "episodic_life: expected a bool, got None"),
    ("compile int", dict(compile=1), TypeError, "compile: expected a bool or None, got 1"),
    ("fire_reset str", dict(fire_reset="no"), TypeError, "fire_reset: expected a bool or None, got 'no'"),
]
CONFIG += [
    ("env_backend", dict(env_backend="threads"), ValueError,
     r"env_backend: expected one of \('auto', 'ale', 'process'\), got 'threads'"),
    ("env_backend int", dict(env_backend=1), TypeError, "env_backend: expected a str, got 1"),
    ("replay_device", dict(replay_device="gpu"), ValueError,
     r"replay_device: expected one of \('auto', 'cpu', 'cuda'\), got 'gpu'"),
    ("update_scale 0", dict(update_scale=0), ValueError, "update_scale: expected an integer >= 1, got 0"),
    ("n_step 0", dict(n_step=0), ValueError, r"n_step: expected an integer in \[1, 64\], got 0"),
    ("n_step 65", dict(n_step=65), ValueError, r"n_step: expected an integer in \[1, 64\], got 65"),
    ("n_step float", dict(n_step=3.0), TypeError, r"n_step: expected an integer in \[1, 64\], got 3.0"),
    ("dueling int", dict(dueling=1), TypeError, "dueling: expected a bool, got 1"),
    ("prioritized None", dict(prioritized=None), TypeError, "prioritized: expected a bool, got None"),
    ("per_alpha 2", dict(per_alpha=2.0), ValueError, r"per_alpha: expected a number in \[0, 1\], got 2.0"),
    ("per_beta -1", dict(per_beta=-1.0), ValueError, r"per_beta: expected a number in \[0, 1\], got -1.0"),
    ("per_eps 0", dict(per_eps=0.0), ValueError, "per_eps: expected a finite number > 0, got 0.0"),
    ("per_beta_frames 0", dict(per_beta_frames=0), ValueError, "per_beta_frames: expected an integer >= 1 or None, got 0"),
    ("update_scale past replay", dict(update_scale=400), ValueError,
     r"update_scale: expected batch_size \* update_scale <= replay_size=10000, got 32 \* 400"),
    ("overlap None", dict(overlap=None), TypeError, "overlap: expected a bool, got None"),
    ("graph str", dict(graph="yes"), TypeError, "graph: expected a bool or None, got 'yes'"),
    # Ray scale-out (the fields that exist only for --ray, then what the actors can run)
    ("ray str", dict(ray="yes"), TypeError, "ray: expected a bool, got 'yes'"),
    ("actors without ray", dict(actors=4), ValueError, "actors: expected 1 without ray \\(--ray\\), got 4"),
    ("envs_per_actor without ray", dict(envs_per_actor=2), ValueError, "envs_per_actor: expected 1 without ray"),
    ("ray_address without ray", dict(ray_address="auto"), ValueError, "ray_address: expected None without ray"),
    ("ray_address int", dict(ray=True, ray_address=6379), TypeError, "ray_address: expected a str or None, got 6379"),
    ("actors 0", dict(ray=True, actors=0), ValueError, "actors: expected an integer >= 1, got 0"),
    ("envs_per_actor 0", dict(ray=True, envs_per_actor=0), ValueError, "envs_per_actor: expected an integer >= 1, got 0"),
    ("chunk_steps 0", dict(ray=True, chunk_steps=0), ValueError, "chunk_steps: expected an integer >= 1, got 0"),
    ("weights_every 0", dict(ray=True, weights_every=0), ValueError, "weights_every: expected an integer >= 1, got 0"),
    ("actor_in_flight 0", dict(ray=True, actor_in_flight=0), ValueError,
     "actor_in_flight: expected an integer >= 1, got 0"),
    ("actor_restarts -1", dict(ray=True, actor_restarts=-1), ValueError,
     "actor_restarts: expected an integer >= 0, got -1"),
    ("actor_timeout nan", dict(ray=True, actor_timeout=NAN), ValueError,
     "actor_timeout: expected a finite number > 0, got nan"),
    ("num_envs with ray", dict(ray=True, num_envs=4), ValueError,
     r"num_envs: expected 1 with ray \(set --envs-per-actor\), got 4"),
    ("num_workers with ray", dict(ray=True, num_workers=2), ValueError, "num_workers: expected None with ray"),
    ("video with ray", dict(ray=True, capture_video=1), ValueError,
     r"capture_video: expected None with ray \(actors record no videos\), got 1"),
    ("ray streams past replay", dict(ray=True, actors=40, envs_per_actor=40), ValueError,
     r"actors: expected actors \* envs_per_actor <= replay_size/8=1250, got 40 \* 40"),
]
if not torch.cuda.is_available():
    CONFIG += [
        ("device cuda, none here", dict(device="cuda"), ValueError, "expected 'cpu' or 'auto' .*got 'cuda'"),
        ("graph on the CPU", dict(graph=True), ValueError,
         r"graph: expected False or None on cpu \(CUDA graphs need a CUDA device\), got True"),
        ("replay on CUDA, learner on the CPU", dict(replay_device="cuda"), ValueError,
         r"replay_device: expected 'auto' or 'cpu' with the learner on cpu"),
    ]


@pytest.mark.parametrize("fields, error, match", rows(CONFIG))
def test_train_config_bad_field_raises_and_changes_nothing(fields, error, match):
    cfg = TrainConfig(**fields)
    before = repr(cfg)
    with pytest.raises(error, match=match):
        cfg.validate()
    assert repr(cfg) == before


def test_unknown_preset():
    names = r"\['breakout', 'cartpole', 'pong', 'pong-rainbow-lite', 'pqn-cartpole', 'pqn-pong', 'rainbow'\]"
    with pytest.raises(ValueError, match=rf"preset: expected one of {names}, got 'nope'"):
        preset("nope")
    with pytest.raises(TypeError, match=r"preset: expected TrainConfig fields as overrides, got unknown \['nope'\]"):
        preset("pong", nope=1)


def test_save_checkpoint_to_a_path_that_cannot_be_a_file(tmp_path):
    learner = Learner(QNetSpec(6), device="cpu")
    with pytest.raises(IsADirectoryError, match=r"checkpoint: expected a file path, got a directory"):
        save_checkpoint(tmp_path, learner, config={})
    with pytest.raises(FileNotFoundError, match=r"checkpoint: expected a path in an existing folder, .* does not exist"):
        save_checkpoint(tmp_path / "runs" / "last.pt", learner, config={})
    with pytest.raises(TypeError, match=r"checkpoint: expected a file path, got NoneType"):
        save_checkpoint(None, learner, config={})
    assert list(tmp_path.iterdir()) == [] and not any(p.name.startswith(f".{tmp_path.name}") for p in tmp_path.parent.iterdir())


def test_train_rejects_a_bad_config_before_starting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run directory would land here
    with pytest.raises(TypeError, match=r"config: expected a TrainConfig \(or None\), got str"):
        train("pong")
    with pytest.raises(TypeError, match=r"train: expected TrainConfig fields as overrides, got unknown \['nope'\]"):
        train(TrainConfig(frames=10), nope=1)
    assert list(tmp_path.iterdir()) == []


# -- 4 (files used by 3). checkpoints: load_checkpoint, play, Learner.load_state_dict ------------------
MARKER = "PWNED"


class Evil:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, folder):
        self.cmd = f"touch {os.path.join(folder, MARKER)}"

    def __reduce__(self):
        return os.system, (self.cmd,)


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    """A folder of good and bad checkpoint files (real ones are 6-action Learners)."""
    d = tmp_path_factory.mktemp("ck")
    real = d / "real.pt"
    save_checkpoint(real, Learner(QNetSpec(6), device="cpu"), config={"env_id": PONG})
    data = real.read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    (d / "empty.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "adir").mkdir()
    (d / "adir.mp4").mkdir()
    torch.save([1, 2, 3], d / "list.pt")
    torch.save({"format": 1, "online": {}}, d / "format1.pt")
    torch.save({"weights": torch.zeros(2)}, d / "foreign.pt")
    torch.save({"format": 2, "online": {}}, d / "keys.pt")
    net = QNetSpec(6).to_dict()
    torch.save({"format": 2, "net": net, "config": {}, "online": Learner(QNetSpec(4), device="cpu").online.state_dict()},
               d / "shapes.pt")
    torch.save({"format": 2, "net": net | {"head": "noisy"}, "config": {},
                "online": Learner(QNetSpec(6), device="cpu").online.state_dict()}, d / "spec.pt")
    torch.save({"format": 2, "online": Evil(str(d))}, d / "evil.pt")
    (d / "evil.pkl").write_bytes(pickle.dumps({"format": 2, "online": Evil(str(d))}, protocol=2))
    for name, config in [("breakout", {"env_id": "BreakoutNoFrameskip-v4"}), ("cartpole", {"env_id": "CartPole-v1"}),
                         ("square", {"env_id": PONG, "layout": "square"})]:
        torch.save({**torch.load(real, weights_only=True), "config": config}, d / f"{name}.pt")
    yield d
    assert not (d / MARKER).exists(), "a malicious pickle ran"


NOT_READABLE = r"checkpoint: '.*{}' is not a readable fastdqn checkpoint"
FILES = [  # (id, file, error, regex)
    ("missing", "missing.pt", FileNotFoundError, "checkpoint: no such file '.*missing.pt'"),
    ("directory", "adir", (FileNotFoundError, ValueError), "checkpoint: expected a file, got a directory"),
    ("empty", "empty.pt", ValueError, "checkpoint: expected a fastdqn checkpoint, got an empty file"),
    ("truncated", "truncated.pt", ValueError, NOT_READABLE.format("truncated.pt") + r" \(.*central directory"),
    ("random bytes", "random.pt", ValueError, NOT_READABLE.format("random.pt")),
    ("not a dict", "list.pt", ValueError, "expected a fastdqn checkpoint of format 2, got 'list'"),
    ("format 1", "format1.pt", ValueError, "expected a fastdqn checkpoint of format 2, got 1"),  # never converted
    ("foreign dict", "foreign.pt", ValueError, "expected a fastdqn checkpoint of format 2, got None"),
    ("missing keys", "keys.pt", ValueError, r"checkpoint: expected keys \['config', 'net', 'online'\].*got missing"),
    ("a head that does not exist", "spec.pt", ValueError,
     r"checkpoint: head: expected one of \('plain', 'dueling'\), got 'noisy' in"),
    ("online shapes", "shapes.pt", ValueError, r"expected an online net with 6 actions, got .*\(4, 512\)"),
    ("malicious torch file", "evil.pt", ValueError, "(?s)" + NOT_READABLE.format("evil.pt") + r".*GLOBAL posix\.system"),
    ("malicious pickle", "evil.pkl", ValueError, "(?s)" + NOT_READABLE.format("evil.pkl") + r".*GLOBAL posix\.system"),
]


@pytest.mark.parametrize("name, error, match", rows(FILES))
def test_load_checkpoint_rejects_bad_files(ck, name, error, match):
    with pytest.raises(error, match=match):
        load_checkpoint(ck / name)
    assert not (ck / MARKER).exists()


PLAY = [  # (id, play() keyword arguments, error, regex)
    *[(f"{k} {v!r}", {k: v}, ValueError, rf"{k}: expected >= {lo}, got {v}") for k, v, lo in
      [("episodes", 0, 1), ("episodes", -1, 1), ("scale", 0, 1), ("max_steps", 0, 1), ("max_steps", -1, 1),
       ("seed", -1, 0)]],
    *[(f"{k} {v!r}", {k: v}, TypeError, rf"{k}: expected an int >= {lo}, got {v!r}") for k, v, lo in
      [("episodes", 1.5, 1), ("episodes", True, 1), ("episodes", "2", 1), ("scale", 1.5, 1), ("max_steps", 2.0, 1),
       ("seed", None, 0)]],
    *[(f"epsilon {v!r}", dict(epsilon=v), ValueError, rf"epsilon: expected a number in \[0, 1\], got {v}")
      for v in (2, -0.1, NAN)],
    ("epsilon str", dict(epsilon="0.1"), TypeError, r"epsilon: expected a number in \[0, 1\], got '0.1'"),
    ("device", dict(device="tpu"), ValueError, "device: expected 'auto', 'cpu' or 'cuda', got 'tpu'"),
    ("video int", dict(video=3), TypeError, "video: expected a file path, got int"),
    ("checkpoint None", dict(checkpoint=None), TypeError, "checkpoint: expected a file path, got NoneType"),
    ("n_actions vs game", dict(checkpoint="breakout.pt"), ValueError,
     "checkpoint: expected 4 actions for BreakoutNoFrameskip-v4, got 6"),
    ("config env_id", dict(checkpoint="cartpole.pt"), ValueError, "checkpoint: expected 2 actions for CartPole-v1, got 6"),
    ("config layout", dict(checkpoint="square.pt"), ValueError, "layout: expected .*got 'square'"),
    *[(f"file {r[0]}", dict(checkpoint=r[1]), *r[2:]) for r in FILES],
]


@pytest.mark.parametrize("kwargs, error, match", rows(PLAY))
def test_play_rejects_bad_input_and_writes_nothing(ck, tmp_path, kwargs, error, match):
    said = []
    args = dict(checkpoint="real.pt", episodes=1, max_steps=1, video=str(tmp_path / "v.mp4"), echo=said.append)
    args.update(kwargs)
    if isinstance(args["checkpoint"], str):
        args["checkpoint"] = str(ck / args["checkpoint"])
    with pytest.raises(error, match=match):
        play(args.pop("checkpoint"), **args)
    assert said == [] and list(tmp_path.iterdir()) == [] and not (ck / MARKER).exists()


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(0, 256, (4, 5, 84, 84), dtype=torch.uint8, generator=g)
    return w[:, :4], torch.randint(0, 6, (4,), generator=g), torch.ones(4), w[:, 1:], torch.zeros(4)


def _trained(n_actions, seed):
    torch.manual_seed(seed)
    lr = Learner(QNetSpec(n_actions), device="cpu")
    lr.update(_batch(seed))  # the optimizer has moments now
    return lr


@pytest.fixture(scope="module")
def donors():
    """A valid 6-action state that differs from the learner under test, and a 4-action one."""
    return _trained(6, 1).state_dict(), _trained(4, 2).state_dict()


def _drop(sd, key):
    return {k: v for k, v in sd.items() if k != key}


def _short_groups(opt):
    opt = copy.deepcopy(opt)
    opt["param_groups"][0]["params"] = opt["param_groups"][0]["params"][:-1]
    return opt


LEARNER = [  # (id, make(good, four) -> state, error, regex)
    ("not a dict", lambda s, f: [s], TypeError, r"state: expected a dict from Learner.state_dict\(\), got list"),
    ("no online", lambda s, f: _drop(s, "online"), ValueError,
     r"state: expected a dict with key 'online', got keys \['optimizer', 'target'\]"),
    ("another net", lambda s, f: s | {"net": QNetSpec(4).to_dict()}, ValueError,
     r"net: expected \{'n_actions': 6, .*\}, got \{'n_actions': 4, "),
    ("online 4 actions", lambda s, f: f, ValueError,
     r"online: expected fc\.2\.weight of shape \(6, 512\) \(6 actions\), got \(4, 512\)"),
    ("target 4 actions", lambda s, f: s | {"target": f["target"]}, ValueError,
     r"target: expected fc\.2\.weight of shape \(6, 512\) \(6 actions\), got \(4, 512\)"),
    ("target missing key", lambda s, f: s | {"target": _drop(s["target"], "fc.2.bias")}, ValueError,
     r"target: expected the keys of the Q-network's state_dict, got missing \['fc\.2\.bias'\], unexpected \[\]"),
    ("target extra key", lambda s, f: s | {"target": s["target"] | {"extra": torch.zeros(1)}}, ValueError,
     r"got missing \[\], unexpected \['extra'\]"),
    ("target not a dict", lambda s, f: s | {"target": 3}, TypeError, r"target: expected a state_dict \(dict\), got int"),
    ("target list value", lambda s, f: s | {"target": s["target"] | {"fc.2.bias": [0.0] * 6}}, TypeError,
     "target: expected fc.2.bias to be a floating-point tensor, got list"),
    ("target int tensor", lambda s, f: s | {"target": s["target"] | {"fc.2.bias": torch.zeros(6, dtype=torch.int64)}},
     TypeError, "expected fc.2.bias to be a floating-point tensor, got torch.int64"),
    ("optimizer 4 actions", lambda s, f: s | {"optimizer": f["optimizer"]}, ValueError,
     r"optimizer: expected exp_avg(_sq)? of shape \(6, 512\), got \(4, 512\)"),
    ("optimizer no groups", lambda s, f: s | {"optimizer": {"state": {}}}, ValueError,
     r"optimizer: expected an Adam state_dict over the online net's 10 parameters, got .*KeyError\('param_groups'\)"),
    ("optimizer short group", lambda s, f: s | {"optimizer": _short_groups(s["optimizer"])}, ValueError,
     "expected an Adam state_dict over the online net's 10 parameters, got .*doesn't match the size"),
    ("optimizer not a dict", lambda s, f: s | {"optimizer": "adam"}, TypeError,
     r"optimizer: expected an Adam state_dict \(dict\), got str"),
]


def _snapshot(lr):
    opt = lr.optimizer.state_dict()
    return ([t.clone() for t in lr.online.state_dict().values()], [t.clone() for t in lr.target.state_dict().values()],
            [t.clone() for st in opt["state"].values() for t in st.values()], copy.deepcopy(opt["param_groups"]))


@pytest.mark.parametrize("make, error, match", rows(LEARNER))
def test_learner_load_state_dict_is_all_or_nothing(donors, make, error, match):
    lr = _trained(6, 0)
    before = _snapshot(lr)
    with pytest.raises(error, match=match):
        lr.load_state_dict(make(*donors))
    after = _snapshot(lr)
    for a, b in zip(before[:3], after[:3]):
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert before[3] == after[3]
    assert math.isfinite(lr.update(_batch(5))[0].item())  # still trains
    lr.load_state_dict(donors[0])  # and still loads a good state


# -- 3. the CLI: a bad flag is one error line, exit non-zero, no traceback, no files ------------------
TRAIN = [  # (id, flags after `train`, regex for the error line)
    ("batch-size 0", ["--batch-size", "0"], "batch_size: expected an integer >= 1, got 0"),
    ("batch-size float", ["--batch-size", "1.5"], "argument --batch-size: invalid int value: '1.5'"),
    ("lr -1", ["--lr", "-1"], r"lr: expected a finite number > 0, got -1\.0"),
    ("lr nan", ["--lr", "nan"], "lr: expected a finite number > 0, got nan"),
    ("gamma 2", ["--gamma", "2"], r"gamma: expected a number in \[0, 1\], got 2\.0"),
    ("eps-start", ["--eps-start", "1.5"], r"eps_start: expected a number in \[0, 1\], got 1\.5"),
    ("replay-ratio 0", ["--replay-ratio", "0"], "replay_ratio: expected a finite number > 0, got 0.0"),
    ("reward-bound nan", ["--reward-bound", "nan"], "reward_bound: expected a finite number or None, got nan"),
    ("replay < batch", ["--replay-size", "16"], "batch_size: expected <= replay_size=16, got 32"),
    ("num-envs 0", ["--num-envs", "0"], "num_envs: expected an integer >= 1, got 0"),
    ("num-envs 2000", ["--num-envs", "2000"], "num_envs: expected <= replay_size/8=1250, got 2000"),
    ("num-workers", ["--num-workers", "2"], "num_workers: expected 0..num_envs=1, got 2"),
    ("threads 0", ["--threads", "0"], "torch_threads: expected an integer >= 1 or None, got 0"),
    ("seed -1", ["--seed", "-1"], r"seed: expected an integer in \[0, 2\*\*63\), got -1"),
    ("noop-max -1", ["--noop-max", "-1"], "noop_max: expected an integer >= 0, got -1"),
    ("checkpoint-every 0", ["--checkpoint-every", "0"], "checkpoint_every: expected an integer >= 1, got 0"),
    ("frames 0", ["--frames", "0"], "frames: expected an integer >= 1 or None, got 0"),
    ("frames abc", ["--frames", "abc"], "argument --frames: invalid int value: 'abc'"),
    ("env Nope", ["--env", "Nope-v0"], "env_id: expected a registered gymnasium id, got 'Nope-v0'"),
    ("env unknown", ["--env", "NoSuchGameNoFrameskip-v4"], "expected a registered Atari id, got 'NoSuchGame"),
    ("device tpu", ["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ("loss", ["--loss", "l1"], "argument --loss: invalid choice: 'l1'"),
    ("layout", ["--layout", "square"], "argument --layout: invalid choice: 'square'"),
    ("preset", ["--preset", "nope"], "argument --preset: invalid choice: 'nope'"),
    ("unknown flag", ["--nope"], "unrecognized arguments: --nope"),
    ("env-backend", ["--env-backend", "gpu"], "argument --env-backend: invalid choice: 'gpu'"),
    ("ale backend, CartPole", ["--env", "CartPole-v1", "--env-backend", "ale"],
     "env_backend: 'ale' cannot run CartPole-v1: CartPole-v1 is not an Atari id"),
    ("ale backend, video", ["--env-backend", "ale", "--capture-video", "1"],
     r"env_backend: 'ale' cannot run PongNoFrameskip-v4: it cannot record videos \(--capture-video\)"),
    ("update-scale 0", ["--update-scale", "0"], "update_scale: expected an integer >= 1, got 0"),
    ("actors without --ray", ["--actors", "2"], r"actors: expected 1 without ray \(--ray\), got 2"),
    ("ray with num-envs", ["--ray", "--num-envs", "4"], r"num_envs: expected 1 with ray \(set --envs-per-actor\)"),
    ("ray actors 0", ["--ray", "--actors", "0"], "actors: expected an integer >= 1, got 0"),
    ("ray bad address form", ["--ray", "localhost"], r"ray: expected a cluster address HOST:PORT .*got 'localhost'"),
]
REAL = ["--checkpoint", "CK:real.pt"]  # "CK:x" is the checkpoint folder's file x, "TMP:x" the test's tmp_path/x
PLAY_CLI = [  # (id, flags after `play`, regex)
    ("missing", ["--checkpoint", "CK:missing.pt"], "checkpoint: no such file '.*missing.pt'"),
    ("directory", ["--checkpoint", "CK:adir"], "checkpoint: .*adir'"),
    ("random bytes", ["--checkpoint", "CK:random.pt"], NOT_READABLE.format("random.pt")),
    ("malicious", ["--checkpoint", "CK:evil.pt"], NOT_READABLE.format("evil.pt")),
    ("malicious, why", ["--checkpoint", "CK:evil.pt"], NOT_READABLE.format("evil.pt") + r".*GLOBAL posix\.system"),
    ("no checkpoint", [], "the following arguments are required: --checkpoint"),
    ("episodes 0", [*REAL, "--episodes", "0"], "episodes: expected >= 1, got 0"),
    ("episodes abc", [*REAL, "--episodes", "abc"], "argument --episodes: invalid int value: 'abc'"),
    ("scale 0", [*REAL, "--scale", "0"], "scale: expected >= 1, got 0"),
    ("epsilon 2", [*REAL, "--epsilon", "2"], r"epsilon: expected a number in \[0, 1\], got 2\.0"),
    ("epsilon nan", [*REAL, "--epsilon", "nan"], r"epsilon: expected a number in \[0, 1\], got nan"),
    ("max-steps 0", [*REAL, "--max-steps", "0"], "max_steps: expected >= 1, got 0"),
    ("seed -1", [*REAL, "--seed", "-1"], "seed: expected >= 0, got -1"),
    ("device tpu", [*REAL, "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ("video not mp4", [*REAL, "--video", "TMP:v.avi"], r"video: expected a path ending in \.mp4, got '.*v\.avi'"),
    ("video a folder", [*REAL, "--video", "TMP:"], r"video: expected a path ending in \.mp4"),
    ("video in a file", [*REAL, "--video", "CK:real.pt/v.mp4"], r"video: expected a file path, got .*real\.pt' is a file\)"),
    ("video a folder.mp4", [*REAL, "--video", "CK:adir.mp4"], r"video: expected a file path, got .*adir\.mp4' \(a directory\)"),
]
CLI = [(f"train {r[0]}", ["train", *r[1], "--out", "TMP:run", "--no-progress", "--no-tensorboard"], *r[2:])
       for r in TRAIN]
CLI += [(f"play {r[0]}", ["play", *r[1], *([] if "--video" in r[1] else ["--video", "TMP:v.mp4"])], *r[2:])
        for r in PLAY_CLI]


@pytest.mark.parametrize("argv, match", rows(CLI))
def test_cli_bad_flag_is_one_line_error(ck, tmp_path, monkeypatch, capsys, argv, match):
    monkeypatch.chdir(tmp_path)  # a default runs/ folder would land here too
    argv = [a.replace("CK:", f"{ck}{os.sep}").replace("TMP:", f"{tmp_path}{os.sep}") for a in argv]
    try:
        code = main(argv)
        by_main = True
    except SystemExit as e:  # argparse: usage, then one error line
        code, by_main = e.code, False
    err = capsys.readouterr().err
    assert code not in (0, None), err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and re.search(match, errors[0]), err
    if by_main:
        assert err.strip() == errors[0]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no run directory, config or video
    assert not (ck / MARKER).exists()


@pytest.mark.parametrize("out, match", [
    ("afile", r"out: expected a directory, got 'afile' \(a file\)"),
    ("afile/run", r"out: expected a directory, got 'afile/run' \('.*afile' is a file\)"),
    ("/proc/fastdqn-run", r"out: expected a folder that can be created, got '/proc/fastdqn-run': .+"),
], ids=["a file", "under a file", "cannot be created"])
def test_cli_unusable_out_is_one_line_error(tmp_path, monkeypatch, capsys, out, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_bytes(b"keep")
    code = main(["train", "--out", out, "--frames", "50", "--no-progress", "--no-tensorboard"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and re.fullmatch("fastdqn train: error: " + match, err), err
    assert [p.name for p in tmp_path.rglob("*")] == ["afile"] and (tmp_path / "afile").read_bytes() == b"keep"


def test_capture_video_of_an_env_without_a_screen_is_refused_before_it_starts(tmp_path, capsys):
    from fastdqn.cli import main

    out = tmp_path / "run"
    assert main(["train", "--env", "CartPole-v1", "--capture-video", "5", "--frames", "100", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("fastdqn train: error: video: expected an env with a screen (Atari, or an RGB env), got "
                   "CartPoleEnv, which renders none here")
    assert not (out / "videos").exists() and not (out / "last.pt").exists()
