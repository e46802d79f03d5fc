"""ReplayBuffer save/restore: exact resumes, atomic files, and bad states rejected before any change."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from fastdqn import ReplayBuffer
from replay_helpers import Frames, assert_same_state, fill, snapshot

SHAPE = (2, 3)


def filled(seed=3, device=None, steps=70, **kw):
    buf = ReplayBuffer(40, num_envs=3, frame_shape=SHAPE, stack=4, seed=seed, device=device, **kw)
    fill(buf, steps, np.random.default_rng(seed))  # wraps every stream's ring
    return buf


def assert_same_batches(a, b, n=5):
    for _ in range(n):
        for x, y in zip(a.sample(16), b.sample(16)):
            assert (x is None and y is None) or torch.equal(x.cpu(), y.cpu())  # weights/indices: prioritized only


@pytest.mark.parametrize("src_device, dst_device", [(None, None), ("cpu", "cpu"), (None, "cpu"), ("cpu", None)])
def test_restored_buffer_samples_and_continues_exactly_like_the_original(src_device, dst_device):
    orig = filled(device=src_device, pad="repeat")
    copy = ReplayBuffer(40, num_envs=3, frame_shape=SHAPE, stack=4, pad="repeat", seed=99, device=dst_device)
    copy.load_state_dict(orig.state_dict())
    assert len(copy) == len(orig) and copy._core.streams() == orig._core.streams()
    assert_same_batches(orig, copy)
    for buf in (orig, copy):  # both continue with the same new episodes and frames
        f = Frames(SHAPE)
        f.n = 10_000
        fill(buf, 30, np.random.default_rng(7), f)
    assert_same_batches(orig, copy)


def test_state_dict_is_a_copy():
    buf = filled()
    state = buf.state_dict()
    before = {k: v.copy() for k, v in state.items() if isinstance(v, np.ndarray)}
    fill(buf, 50, np.random.default_rng(1))
    for k, v in before.items():
        np.testing.assert_array_equal(state[k], v, err_msg=k)


def test_file_round_trip_is_atomic_and_exact(tmp_path):
    buf = filled()
    path = tmp_path / "replay.npz"
    path.write_bytes(b"old")
    buf.save(path)
    assert sorted(os.listdir(tmp_path)) == ["replay.npz"], "no temp file left behind"
    loaded = ReplayBuffer.load(path)
    assert (loaded.capacity, loaded.num_envs, loaded.stack, loaded.frame_shape) == (40, 3, 4, SHAPE)
    assert_same_state(snapshot(buf), snapshot(loaded))
    assert_same_batches(buf, loaded)
    dev = ReplayBuffer.load(path, device="cpu")
    assert_same_batches(ReplayBuffer.load(path), dev)


def corrupt(key, value):
    def apply(state):
        state[key] = value(state[key]) if callable(value) else value
    return apply


def epos_jump(epos):
    epos = epos.copy()
    epos[np.flatnonzero(epos)[5]] += 1  # a stack would now reach into the previous episode
    return epos


def delete(key):
    return lambda state: state.pop(key)


BAD_STATES = [
    ("capacity", corrupt("capacity", 41), ValueError, r"'capacity'\]: expected 40 .*got 41"),
    ("frame_shape", corrupt("frame_shape", (3, 2)), ValueError, r"expected \(2, 3\) .*got \(3, 2\)"),
    ("pad", corrupt("pad", "zeros"), ValueError, r"expected 'repeat' .*got 'zeros'"),
    ("stack", corrupt("stack", 3), ValueError, "expected 4 .*got 3"),
    ("version", corrupt("version", 1), ValueError, "expected format version 2, got 1"),
    ("dtype", corrupt("dtype", "float32"), ValueError, r"'dtype'\]: expected 'uint8' .*got 'float32'"),
    ("n_step", corrupt("n_step", 2), ValueError, r"'n_step'\]: expected 1 .*got 2"),
    ("no n_step", delete("n_step"), ValueError, r"missing \['n_step'\]"),  # no defaults for required keys
    ("no alpha", delete("alpha"), ValueError, r"missing \['alpha'\]"),
    ("prioritized int", corrupt("prioritized", 0), TypeError, r"'prioritized'\]: expected bool, got int"),
    ("missing key", delete("rng"), ValueError, r"missing \['rng'\]"),
    ("extra key", corrupt("extra", 1), ValueError, r"unexpected \['extra'\]"),
    ("int as str", corrupt("capacity", "40"), TypeError, "expected int, got str"),
    ("frames dtype", corrupt("frames", lambda a: a.astype(np.int16)), TypeError, "expected dtype uint8, got int16"),
    ("frames shape", corrupt("frames", lambda a: a[:-1]), ValueError, r"expected shape \(40, 2, 3\), got \(39, 2, 3\)"),
    ("actions dtype", corrupt("actions", lambda a: a.astype(np.int64)), TypeError, "expected dtype int32, got int64"),
    ("actions list", corrupt("actions", lambda a: a.tolist()), TypeError, "expected a numpy array, got list"),
    ("nan reward", corrupt("rewards", lambda a: np.where(np.arange(40) == 3, np.nan, a).astype(np.float32)),
     ValueError, "expected finite values"),
    ("negative action", corrupt("actions", lambda a: a - 10), ValueError, "expected values >= 0"),
    ("zero rng", corrupt("rng", np.zeros(4, np.uint64)), ValueError, "non-zero xoshiro state, got all zeros"),
    ("rng shape", corrupt("rng", np.ones(3, np.uint64)), ValueError, r"'rng'\]: expected shape \(4,\), got \(3,\)"),
    ("open dtype", corrupt("open", lambda a: a.astype(np.uint8)), TypeError, "expected dtype bool, got uint8"),
    ("negative priority", corrupt("priorities", lambda a: a - 1), ValueError,
     r"'priorities'\]: expected finite values >= 0"),
    ("max_priority", corrupt("max_priority", 0.0), ValueError, r"'max_priority'\]: expected a finite number > 0, got 0"),
    ("unwritten slot", corrupt("written", lambda a: np.minimum(a, 3)), ValueError, "stream 0: expected zero metadata"),
    ("bad flag bits", corrupt("flags", lambda a: a | 8), ValueError, "expected flags made of"),
    ("epos jump", corrupt("epos", epos_jump), ValueError, "expected episode positions"),
    ("open flipped", corrupt("open", lambda a: ~a), ValueError, "expected open="),
    ("negative written", corrupt("written", lambda a: a - 1000), ValueError, r"expected written in \[0, 2\^62\)"),
    ("written shifted", corrupt("written", lambda a: a + 1), ValueError, "stream 0: expected"),
    ("len", corrupt("len", lambda v: v + 1), ValueError, r"'len'\]: expected \d+ \(counted from the arrays\)"),
]


@pytest.mark.parametrize("name, mutate, error, match", BAD_STATES, ids=[c[0] for c in BAD_STATES])
def test_bad_state_is_rejected_and_changes_nothing(name, mutate, error, match):
    target = filled(seed=11, pad="repeat")
    before = snapshot(target)
    state = filled(seed=5, pad="repeat").state_dict()
    mutate(state)
    with pytest.raises(error, match=match):
        target.load_state_dict(state)
    assert_same_state(before, snapshot(target))


def test_not_a_dict():
    buf = filled()
    with pytest.raises(TypeError, match="expected a dict, got list"):
        buf.load_state_dict([1, 2])


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04garbage", b"not a zip at all" * 100])
def test_damaged_file_raises_value_error(tmp_path, data):
    path = tmp_path / "r.npz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="expected a ReplayBuffer.save"):
        ReplayBuffer.load(path)


SAVE_PATHS = [  # (id, path under tmp_path, error, regex): nothing may be written anywhere
    ("a folder", ".", IsADirectoryError, r"replay file: expected a file path, got a directory"),
    ("missing folder", "nope/r.npz", FileNotFoundError, r"expected a path in an existing folder, .*nope' does not exist"),
    ("under a file", "afile/r.npz", NotADirectoryError, r"expected a path in an existing folder, .*afile' is a file"),
]


@pytest.mark.parametrize("where, error, match", [c[1:] for c in SAVE_PATHS], ids=[c[0] for c in SAVE_PATHS])
def test_save_to_a_path_that_cannot_be_a_file(tmp_path, where, error, match):
    (tmp_path / "afile").write_bytes(b"keep")
    buf = filled()
    before = snapshot(buf)
    with pytest.raises(error, match=match):
        buf.save(tmp_path / where)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["afile"] and (tmp_path / "afile").read_bytes() == b"keep"
    assert_same_state(before, snapshot(buf))


def test_load_from_a_path_that_is_not_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"replay file: no such file '.*missing\.npz'"):
        ReplayBuffer.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"replay file: expected a file, got a directory"):
        ReplayBuffer.load(tmp_path)
    with pytest.raises(TypeError, match=r"replay file: expected a file path, got int"):
        ReplayBuffer.load(3)


def test_truncated_file_raises_value_error(tmp_path):
    path = tmp_path / "r.npz"
    filled().save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError):
        ReplayBuffer.load(path)


CHILD = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, sys.argv[2])
    from fastdqn import ReplayBuffer
    from replay_helpers import fill
    buf = ReplayBuffer(4000, num_envs=2, frame_shape=(84, 84), seed=0)
    rng = np.random.default_rng(0)
    fill(buf, 2500, rng)
    print("ready", flush=True)
    while True:
        fill(buf, 50, rng)
        buf.save(sys.argv[1])
""")


def test_sigkill_during_save_leaves_a_loadable_file(tmp_path):
    """SIGKILL a process that saves a 28 MB buffer in a loop, at random moments, 10 times:
    the file at the path always loads (old or new contents, never torn)."""
    path = tmp_path / "replay.npz"
    tests = os.path.dirname(__file__)
    rng = np.random.default_rng(0)
    for _ in range(10):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), tests], stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"
        while not path.exists():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        buf = ReplayBuffer.load(path)
        assert len(buf) > 0
