"""Every bad input to the core API (ReplayBuffer, preprocess) in one table.

Each case must raise ValueError/TypeError whose message names what was expected and what came
(the regex matches both), and must leave the buffer exactly as it was: storage, streams, len and
the sampling RNG (a rejected sample() must not consume random numbers either).
Replay cases run on the host store and on the device-resident path (frames in a torch tensor).
Saved-state (load_state_dict) cases are in test_replay_state.py.
"""

import numpy as np
import pytest
import torch

from fastdqn import ReplayBuffer
from fastdqn.frames import preprocess as P
from replay_helpers import assert_same_state, snapshot

SHAPE = (2, 3)
U8 = np.uint8


def frame(v=1, dtype=U8, shape=SHAPE):
    return np.full(shape, v, dtype)


def frames(n, shape=SHAPE):
    return np.ones((n, *shape), U8)


def strided(shape=SHAPE):
    return np.ones(shape[::-1], U8).T  # right shape, not C-contiguous


def ok_many(**kw):
    """add_many arguments that are valid for the fixture, with some replaced."""
    args = dict(actions=np.array([1, 2]), rewards=np.array([0.5, -1.0], np.float32), next_frames=frames(2),
                terminated=np.array([False, False]), truncated=None)
    args.update(kw)
    return lambda b: b.add_many(**args)


# (id, call, error, regex naming expected and got, modes: "host"/"dev"/both)
REPLAY = [
    # start: frame shape, dtype, layout, type
    ("start shape", lambda b: b.start(frame(shape=(3, 2))), ValueError, r"expected shape \(2, 3\), got \(3, 2\)"),
    ("start ndim", lambda b: b.start(frame(shape=(6,))), ValueError, r"expected shape \(2, 3\), got \(6,\)"),
    ("start dtype", lambda b: b.start(frame(dtype=np.float32)), TypeError, "expected dtype uint8, got (torch\\.)?float32"),
    ("start int64 list", lambda b: b.start([[1, 2, 3], [4, 5, 6]]), TypeError, r"expected .*uint8.*, got (int64|list)"),
    ("start None", lambda b: b.start(None), TypeError, r"expected .*uint8.*, got (object|NoneType)"),
    ("start strided", lambda b: b.start(strided()), ValueError, "expected a C-contiguous array .*got strides", "host"),
    # env index
    ("env too big", lambda b: b.start(frame(), env=2), ValueError, r"expected an index in \[0, 2\), got 2"),
    ("env negative", lambda b: b.start(frame(), env=-1), ValueError, "expected an int >= 0, got -1"),
    ("env float", lambda b: b.start(frame(), env=1.0), TypeError, "env: expected an int, got float"),
    ("env bool", lambda b: b.add(0, 0.0, frame(), False, env=True), TypeError, "env: expected an int, got bool"),
    # add: action, reward, episode state
    ("action negative", lambda b: b.add(-1, 0.0, frame(), False, env=1), ValueError, r"action: expected an int in \[0, 2\^31\), got -1"),
    ("action float", lambda b: b.add(1.5, 0.0, frame(), False, env=1), TypeError, "action: expected an int, got float"),
    ("action str", lambda b: b.add("1", 0.0, frame(), False, env=1), TypeError, "action: expected an int, got str"),
    ("action >= 2^31", lambda b: b.add(2**31, 0.0, frame(), False, env=1), ValueError,
     r"expected an int in \[0, 2\^31\), got 2147483648"),
    ("action 2^70", lambda b: b.add(2**70, 0.0, frame(), False, env=1), ValueError, r"\[0, 2\^31\), got 1180591"),
    ("reward nan", lambda b: b.add(0, float("nan"), frame(), False, env=1), ValueError, "expected a finite .*got nan"),
    ("reward inf", lambda b: b.add(0, float("inf"), frame(), False, env=1), ValueError, "expected a finite .*got inf"),
    ("reward -inf", lambda b: b.add(0, -np.inf, frame(), False, env=1), ValueError, "expected a finite .*got -inf"),
    ("reward > float32", lambda b: b.add(0, 1e39, frame(), False, env=1), ValueError, "finite float32 value, got 1e"),
    ("reward str", lambda b: b.add(0, "1", frame(), False, env=1), TypeError, "reward: expected a float, got str"),
    ("reward None", lambda b: b.add(0, None, frame(), False, env=1), TypeError, "expected a float, got NoneType"),
    ("terminated None", lambda b: b.add(0, 0.0, frame(), None, env=1), TypeError, "terminated: expected a bool, got None"),
    ("terminated str", lambda b: b.add(0, 0.0, frame(), "yes", env=1), TypeError, "terminated: expected a bool, got 'yes'"),
    ("terminated array", lambda b: b.add(0, 0.0, frame(), np.array([True]), env=1), TypeError,
     r"terminated: expected a bool, got array\(\[ True\]\)"),
    ("truncated 2", lambda b: b.add(0, 0.0, frame(), False, 2, env=1), TypeError, "truncated: expected a bool, got 2"),
    ("add frame shape", lambda b: b.add(0, 0.0, frame(shape=(2, 2)), False, env=1), ValueError,
     r"expected shape \(2, 3\), got \(2, 2\)"),
    ("add frame dtype", lambda b: b.add(0, 0.0, frame(dtype=np.int8), False, env=1), TypeError,
     "expected dtype uint8, got (torch\\.)?int8"),
    ("add strided", lambda b: b.add(0, 0.0, strided(), False, env=1), ValueError, "C-contiguous", "host"),
    ("add before start", lambda b: b.add(0, 0.0, frame(), False, env=0), ValueError,
     "before start.*expected an open episode, got none"),
    # add_many: every argument
    ("many before start", ok_many(), ValueError, "env 0 before start.*expected an open episode.*got none"),
    ("many frames count", ok_many(next_frames=frames(1)), ValueError, r"expected shape \(2, 2, 3\), got \(1, 2, 3\)"),
    ("many frames dtype", ok_many(next_frames=frames(2).astype(np.float64)), TypeError,
     "expected dtype uint8, got (torch\\.)?float64"),
    ("many frames strided", ok_many(next_frames=np.ones((3, 2, 2), U8).T), ValueError, "C-contiguous", "host"),
    ("many actions len", ok_many(actions=np.array([1])), ValueError, r"actions: expected shape \(2,\), got \(1,\)"),
    ("many actions 2-D", ok_many(actions=np.ones((2, 1), np.int64)), ValueError, r"expected shape \(2,\), got \(2, 1\)"),
    ("many actions float", ok_many(actions=np.array([1.0, 2.0])), TypeError,
     "actions: expected dtype kind in 'iu', got float64"),
    ("many actions negative", ok_many(actions=np.array([-3, 0])), ValueError, r"action: expected an int in \[0, 2\^31\), got -3"),
    ("many actions huge", ok_many(actions=np.array([2**40, 0])), ValueError, r"\[0, 2\^31\), got 1099511627776"),
    ("many rewards nan", ok_many(rewards=np.array([np.nan, 0], np.float32)), ValueError, "reward: expected a finite float32 value, got nan"),
    ("many rewards inf", ok_many(rewards=np.array([np.inf, 0])), ValueError, "reward: expected a finite float32 value, got inf"),
    ("many rewards str", ok_many(rewards=np.array(["a", "b"])), TypeError, "rewards: expected dtype kind in 'iuf', got <U1"),
    ("many rewards len", ok_many(rewards=np.zeros(3, np.float32)), ValueError, r"expected shape \(2,\), got \(3,\)"),
    ("many terminated len", ok_many(terminated=np.array([True])), ValueError,
     r"terminated: expected shape \(2,\), got \(1,\)"),
    ("many terminated float", ok_many(terminated=np.array([0.0, 1.0])), TypeError,
     "terminated: expected dtype kind in 'biu', got float64"),
    ("many truncated len", ok_many(truncated=np.zeros(3, bool)), ValueError, r"truncated: expected shape \(2,\), got \(3,\)"),
    # add_many on some streams (envs=)
    ("many envs closed stream", ok_many(envs=[1, 0]), ValueError, "add\\(\\) on env 0 before start\\(\\)"),
    ("many envs duplicate", ok_many(envs=[1, 1]), ValueError, "expected distinct env indices, got 1 twice"),
    ("many envs range", ok_many(actions=np.array([1]), rewards=np.zeros(1, np.float32), next_frames=frames(1),
                                terminated=np.array([False]), envs=[2]), ValueError, r"\[0, 2\), got 2"),
    ("many envs vs arrays", ok_many(envs=[1]), ValueError, r"expected shape \(1, 2, 3\), got \(2, 2, 3\)"),
    ("many envs 2-D", ok_many(envs=[[1], [0]]), TypeError, r"envs: expected a sequence of stream indices, got int64 \[2, 1\]"),
    ("many envs float", ok_many(envs=[1.0, 0.0]), TypeError, "envs: expected dtype kind in 'iu', got float64"),
    # start_many
    ("start_many duplicate", lambda b: b.start_many(frames(2), envs=[1, 1]), ValueError,
     "expected distinct env indices, got 1 twice"),
    ("start_many env range", lambda b: b.start_many(frames(1), envs=[2]), ValueError, r"\[0, 2\), got 2"),
    ("start_many env negative", lambda b: b.start_many(frames(1), envs=[-1]), ValueError, r"\[0, 2\), got -1"),
    ("start_many env 2^32+1", lambda b: b.start_many(frames(1), envs=[2**32 + 1]), ValueError,
     r"\[0, 2\), got 4294967297"),
    ("start_many envs float", lambda b: b.start_many(frames(1), envs=[0.0]), TypeError,
     "envs: expected dtype kind in 'iu', got float64"),
    ("start_many count", lambda b: b.start_many(frames(1)), ValueError, r"expected shape \(2, 2, 3\), got \(1, 2, 3\)"),
    ("start_many frames vs envs", lambda b: b.start_many(frames(2), envs=[0]), ValueError,
     r"expected shape \(1, 2, 3\), got \(2, 2, 3\)"),
    # sample
    ("batch > stored", lambda b: b.sample(4), ValueError, "batch_size 4 is larger than the 3 transitions stored"),
    ("batch huge", lambda b: b.sample(10**12), ValueError, "batch_size 1000000000000 is larger than the 3 transitions"),
    ("batch 0", lambda b: b.sample(0), ValueError, "batch_size: expected an int >= 1, got 0"),
    ("batch negative", lambda b: b.sample(-2), ValueError, "expected an int >= 1, got -2"),
    ("batch float", lambda b: b.sample(2.0), TypeError, "batch_size: expected an int, got float"),
    ("batch None", lambda b: b.sample(None), TypeError, "batch_size: expected an int, got NoneType"),
]


def replay_params():
    for case in REPLAY:
        modes = case[4:] or ("host", "dev")
        for mode in ("host", "dev"):
            if mode in modes:
                yield pytest.param(*case[1:4], mode, id=f"{case[0]}-{mode}")


def fixture_buffer(mode):
    """Env 0: a finished episode (2 transitions); env 1: an open one (1 transition)."""
    buf = ReplayBuffer(20, num_envs=2, frame_shape=SHAPE, stack=2, seed=0, device=None if mode == "host" else "cpu")
    buf.start(frame(1), env=0)
    buf.add(1, 1.0, frame(2), False, env=0)
    buf.add(2, 0.5, frame(3), True, env=0)
    buf.start(frame(4), env=1)
    buf.add(3, -1.0, frame(5), False, env=1)
    assert len(buf) == 3
    return buf


@pytest.mark.parametrize("call, error, match, mode", list(replay_params()))
def test_replay_bad_input_raises_and_changes_nothing(call, error, match, mode):
    buf = fixture_buffer(mode)
    before = snapshot(buf)
    with pytest.raises(error, match=match):
        call(buf)
    assert_same_state(before, snapshot(buf))
    buf.sample(3)  # still usable


def test_flags_as_envs_return_them_are_accepted():
    buf = fixture_buffer("host")
    buf.add(0, 0.0, frame(6), np.bool_(False), 0, env=1)  # gymnasium's np.bool_, and 0/1
    buf.add(0, 0.0, frame(7), 1, np.bool_(False), env=1)
    assert len(buf) == 5
    with pytest.raises(ValueError, match="before start"):  # the episode on env 1 ended
        buf.add(0, 0.0, frame(8), False, env=1)


@pytest.mark.parametrize("mode", ["host", "dev"])
def test_sample_before_any_transition(mode):
    buf = ReplayBuffer(20, frame_shape=SHAPE, device=None if mode == "host" else "cpu")
    buf.start(frame())  # a frame but no transition yet
    before = snapshot(buf)
    for batch in (1, 10**12):  # refused before the output is allocated
        with pytest.raises(ValueError, match="before any complete transition.*expected >= 1 stored, got 0"):
            buf.sample(batch)
    assert_same_state(before, snapshot(buf))


def test_device_store_rejects_frames_given_to_the_core():
    buf = fixture_buffer("dev")
    before = snapshot(buf)
    with pytest.raises(ValueError, match="this store keeps no frames; pass None"):
        buf._core.start(frame(), 0)
    with pytest.raises(TypeError, match=r"expected a uint8 array or tensor of shape \(2, 3\), got list"):
        buf.start([[1, 2, 3], [4, 5, 6]])
    assert_same_state(before, snapshot(buf))


CONSTRUCTOR = [
    (dict(capacity=0), ValueError, "capacity: expected an int >= 1, got 0"),
    (dict(capacity=-5), ValueError, "capacity: expected an int >= 1, got -5"),
    (dict(capacity=10.5), TypeError, "capacity: expected an int, got float"),
    (dict(capacity=True), TypeError, "capacity: expected an int, got bool"),
    (dict(capacity="100"), TypeError, "capacity: expected an int, got str"),
    (dict(capacity=4, stack=4), ValueError, r"capacity: expected >= \(stack \+ 1\) \* num_envs = 5, got 4"),
    (dict(capacity=9, num_envs=2, stack=4), ValueError, "= 10, got 9"),
    (dict(capacity=100, num_envs=0), ValueError, "num_envs: expected an int >= 1, got 0"),
    (dict(capacity=2**70), ValueError, "capacity: expected an int that fits in 64 bits, got 1180591620717411303424"),
    (dict(capacity=100, num_envs=2**40), ValueError, "num_envs: expected at most 2\\^31 - 1 streams, got 1099511627776"),
    (dict(capacity=100, stack=0), ValueError, r"stack: expected an int in \[1, 64\], got 0"),
    (dict(capacity=1000, stack=65), ValueError, r"stack: expected an int in \[1, 64\], got 65"),
    (dict(capacity=100, pad="edge"), ValueError, r"pad: expected one of \('zeros', 'repeat'\), got 'edge'"),
    (dict(capacity=100, pad=1), TypeError, "pad: expected a str, got int"),
    (dict(capacity=100, frame_shape=(84, 0)), ValueError, r"frame_shape: expected sizes >= 1, got \(84, 0\)"),
    (dict(capacity=100, frame_shape=(84, -1)), ValueError, r"expected sizes >= 1, got \(84, -1\)"),
    (dict(capacity=100, frame_shape=()), ValueError, r"frame_shape: expected at least one dimension, got \(\)"),
    (dict(capacity=100, frame_shape="84"), TypeError, "expected a tuple of ints, got '84'"),
    (dict(capacity=100, frame_shape=(84.0, 84)), TypeError, "frame_shape: expected an int, got float"),
    (dict(capacity=16, frame_shape=(2**32, 2**32), stack=1), ValueError,
     r"expected a frame of at most 2\^63 - 1 bytes, got \(4294967296, 4294967296\)"),
    (dict(capacity=100, seed=-1), ValueError, "seed: expected an int >= 0, got -1"),
    (dict(capacity=100, seed=1.5), TypeError, "seed: expected an int, got float"),
    (dict(capacity=100, dtype="int16"), ValueError, r"dtype: expected one of \('uint8', 'float32'\), got 'int16'"),
    (dict(capacity=100, dtype=None), TypeError, "dtype: expected a str, got NoneType"),
    (dict(capacity=100, device="tpu9"), ValueError, "device: expected 'auto', 'cpu' or 'cuda', got 'tpu9'"),
    (dict(capacity=100, device=1.5), TypeError, "device: expected 'auto', 'cpu' or 'cuda', got 1.5"),
    (dict(capacity=100, n_step=0), ValueError, r"n_step: expected an int in \[1, 64\], got 0"),
    (dict(capacity=100, n_step=65), ValueError, r"n_step: expected an int in \[1, 64\], got 65"),
    (dict(capacity=100, n_step=2.0), TypeError, "n_step: expected an int, got float"),
    (dict(capacity=100, gamma=1.5), ValueError, r"gamma: expected a number in \[0, 1\], got 1.5"),
    (dict(capacity=100, gamma=float("nan")), ValueError, r"gamma: expected a number in \[0, 1\], got nan"),
    (dict(capacity=100, gamma="0.9"), TypeError, "gamma: expected a float, got str"),
    (dict(capacity=100, prioritized=None), TypeError, "prioritized: expected a bool, got None"),
    (dict(capacity=100, prioritized=True, alpha=-0.1), ValueError, r"alpha: expected a number in \[0, 1\], got -0.1"),
    (dict(capacity=100, prioritized=True, eps=0.0), ValueError, "eps: expected a finite number > 0, got 0$"),
    (dict(capacity=100, prioritized=True, eps=float("nan")), ValueError, "eps: expected a finite number > 0, got nan"),
]
if not torch.cuda.is_available():
    CONSTRUCTOR += [(dict(capacity=100, device="cuda"), ValueError, "device: expected 'cpu' or 'auto' on this machine, "
                     r"got 'cuda' \(no CUDA device\)")]


def test_float32_frames_are_checked_like_uint8_ones():
    """A vector-observation buffer names its dtype when given pixels, and keeps its state."""
    buf = ReplayBuffer(16, frame_shape=(4,), stack=1, dtype="float32", seed=0)
    buf.start(np.zeros(4, np.float32))
    before = snapshot(buf)
    with pytest.raises(TypeError, match="next_frame: expected dtype float32, got uint8"):
        buf.add(0, 1.0, np.zeros(4, np.uint8), False)
    with pytest.raises(ValueError, match=r"expected shape \(4,\), got \(5,\)"):
        buf.add(0, 1.0, np.zeros(5, np.float32), False)
    assert_same_state(before, snapshot(buf))


@pytest.mark.parametrize("kwargs, error, match", CONSTRUCTOR, ids=[str(c[0]) for c in CONSTRUCTOR])
def test_bad_constructor_arguments(kwargs, error, match):
    kwargs.setdefault("frame_shape", SHAPE)
    with pytest.raises(error, match=match):
        ReplayBuffer(**kwargs)


def test_core_validates_the_options_without_the_python_layer():
    """ReplayOptions carries values unchecked and has no defaults (ReplayBuffer's signature holds
    them); ReplayCore refuses bad ones (the one check of each)."""
    core = pytest.importorskip("fastdqn._core")
    good = dict(capacity=100, num_envs=1, frame_shape=[2, 3], dtype="uint8", stack=4, pad="zeros", seed=0, n_step=1,
                gamma=0.99, prioritized=False, alpha=0.6, eps=1e-6)
    assert len(core.ReplayCore(core.ReplayOptions(**good))) == 0
    for kw, match in [({}, "capacity: expected an int >= 1, got 0"),
                      (dict(good, stack=0), r"stack: expected an int in \[1, 64\], got 0"),
                      (dict(good, gamma=2.0), r"gamma: expected a number in \[0, 1\], got 2"),
                      (dict(good, pad="edge"), "pad: expected one of .*, got 'edge'"),
                      (dict(good, dtype="float64"), "dtype: expected one of .*, got 'float64'")]:
        options = core.ReplayOptions(**kw)
        with pytest.raises(ValueError, match=match):
            core.ReplayCore(options)
    with pytest.raises(TypeError, match="ReplayOptions: unexpected option 'gama'"):
        core.ReplayOptions(gama=0.9)
    with pytest.raises(TypeError, match="gamma: expected float, got str"):
        core.ReplayOptions(gamma="0.9")


def test_properties_are_the_cores_options():
    buf = ReplayBuffer(100, num_envs=2, frame_shape=[4], stack=2, pad="repeat", dtype=np.float32, n_step=3,
                       gamma=0.9, prioritized=1, alpha=0.5, eps=0.01, seed=2**70 + 5)
    opts = buf._core.options
    assert (buf.capacity, buf.num_envs, buf.frame_shape, buf.dtype, buf.stack, buf.pad) == \
        (opts.capacity, opts.num_envs, tuple(opts.frame_shape), np.dtype(opts.dtype), opts.stack, opts.pad) == \
        (100, 2, (4,), np.float32, 2, "repeat")
    assert (buf.n_step, buf.gamma, buf.prioritized, buf.alpha, buf.eps) == (3, 0.9, True, 0.5, 0.01)
    assert opts.seed == 5 and not hasattr(buf, "_stack")  # Python seeds fold modulo 2^64; no copies kept


RAW = (210, 160, 3)
PRE = [  # (id, kwargs for process_frame or process_batch, error, regex)
    ("frame dtype", dict(frame=np.zeros(RAW, np.float32)), TypeError, "frame: expected dtype uint8, got (torch\\.)?float32"),
    ("frame height", dict(frame=np.zeros((200, 160, 3), U8)), ValueError,
     r"expected shape \(210\|250, 160, 3\) \(RGB\) or \(210\|250, 160\) \(grey\), got \(200, 160, 3\)"),
    ("frame ndim", dict(frame=np.zeros((210,), U8)), ValueError, r"expected shape .*got \(210,\)"),
    ("grey frame height", dict(frame=np.zeros((200, 160), U8)), ValueError, r"expected shape .*got \(200, 160\)"),
    ("grey frame, RGB prev", dict(frame=np.zeros((210, 160), U8), prev=np.zeros(RAW, U8)), ValueError,
     r"prev: expected the frames' shape \(210, 160\), got \(210, 160, 3\)"),
    ("frame width", dict(frame=np.zeros((210, 161, 3), U8)), ValueError, r"got \(210, 161, 3\)"),
    ("frame strided", dict(frame=np.zeros((160, 210, 3), U8).transpose(1, 0, 2)), ValueError,
     "expected a C-contiguous array .*got a strided view"),
    ("frame list", dict(frame=[[0]]), TypeError, r"expected a numpy uint8 array of shape \(210\|250, 160, 3\) .*got list"),
    ("frame None", dict(frame=None), TypeError, "got NoneType"),
    ("prev shape", dict(prev=np.zeros((250, 160, 3), U8)), ValueError,
     r"prev: expected the frames' shape \(210, 160, 3\), got \(250, 160, 3\)"),
    ("prev dtype", dict(prev=np.zeros(RAW, np.int16)), TypeError, "prev: expected dtype uint8, got int16"),
    ("layout", dict(layout="square"), ValueError, r"layout: expected one of \('crop', 'full'\), got 'square'"),
    ("backend", dict(backend="gpu"), ValueError, r"backend: expected one of \[.*\], got 'gpu'"),
    ("out dtype", dict(out=np.zeros((84, 84), np.int16)), TypeError, "out: expected a numpy uint8 array, got int16"),
    ("out list", dict(out=[0]), TypeError, "out: expected a numpy uint8 array, got list"),
    ("out shape", dict(out=np.zeros((84, 85), U8)), ValueError, r"of shape \(84, 84\), got \(84, 85\)"),
    ("out strided", dict(out=np.zeros((84, 84), U8).T[::1, ::1].T.copy(order="F")), ValueError,
     r"writable C-contiguous array of shape \(84, 84\)"),
    ("batch ndim", dict(frames=np.zeros((210, 160), U8)), ValueError,
     r"expected shape \(N, 210\|250, 160, 3\) \(RGB\) or \(N, 210\|250, 160\) \(grey\), got \(210, 160\)"),
    ("batch prev count", dict(frames=np.zeros((2, *RAW), U8), prev=np.zeros((1, *RAW), U8)), ValueError,
     r"prev: expected the frames' shape \(2, 210, 160, 3\), got \(1, 210, 160, 3\)"),
    ("batch out count", dict(frames=np.zeros((2, *RAW), U8), out=np.zeros((1, 84, 84), U8)), ValueError,
     r"of shape \(2, 84, 84\), got \(1, 84, 84\)"),
    ("batch threads", dict(frames=np.zeros((2, *RAW), U8), threads="4"), TypeError, "threads: expected an int or None, got str"),
]


def read_only_out():
    out = np.full((84, 84), 7, U8)
    out.flags.writeable = False
    return out


PRE.append(("out read-only", dict(out=read_only_out()), ValueError, "writable"))


@pytest.mark.parametrize("kwargs, error, match", [c[1:] for c in PRE], ids=[c[0] for c in PRE])
@pytest.mark.parametrize("backend", P.backends())
def test_preprocess_bad_input_raises_and_writes_nothing(kwargs, error, match, backend):
    batched = "frames" in kwargs
    args = dict(backend=backend) if batched else dict(frame=np.full(RAW, 9, U8), backend=backend)
    args.update(kwargs)
    src = args.pop("frames" if batched else "frame")
    out = args.get("out")
    inputs = [a.copy() for a in (src, args.get("prev"), out) if isinstance(a, np.ndarray)]
    with pytest.raises(error, match=match):
        (P.process_batch if batched else P.process_frame)(src, **args)
    after = [a for a in (src, args.get("prev"), out) if isinstance(a, np.ndarray)]
    for a, b in zip(inputs, after):
        np.testing.assert_array_equal(a, b)


def test_core_preprocess_checks_without_the_python_layer():
    """fastdqn._core.preprocess_batch validates on its own (the C++ face, called by the cpp backend)."""
    core = P._core
    if core is None:
        pytest.skip("_core not built")
    good, out = np.zeros((1, *RAW), U8), np.full((1, 84, 84), 7, U8)
    for args, error, match in [
        ((np.zeros((1, 211, 160, 3), U8), None, out), ValueError, "expected height 210 or 250, got 211"),
        ((good.astype(np.int8), None, out), TypeError, "expected dtype uint8, got (torch\\.)?int8"),
        ((good, None, np.zeros((2, 84, 84), U8)), ValueError, r"out: expected shape \(1, 84, 84\), got \(2, 84, 84\)"),
        ((good, "x", out), TypeError, "expected dtype uint8, got <U1"),
        ((good, None, out, "wide"), ValueError, "layout: expected 'crop' or 'full', got 'wide'"),
        ((np.zeros((1, 210), U8), None, out), ValueError, r"expected shape \(N, 210, 160, 3\) \(RGB\) or "
         r"\(N, 210, 160\) \(grey\), got \(1, 210\)"),
        ((np.zeros((1, 210, 160), U8), good, out), ValueError, r"prev: expected shape \(1, 210, 160\)"),
    ]:
        with pytest.raises(error, match=match):
            core.preprocess_batch(*args)
    assert (out == 7).all()
    assert torch.equal(torch.from_numpy(out), torch.full((1, 84, 84), 7, dtype=torch.uint8))


def test_core_add_rejects_reward_beyond_float32():
    """The C++ face checks the double -> float range itself (the cast would be undefined)."""
    buf = fixture_buffer("host")
    before = snapshot(buf)
    with pytest.raises(ValueError, match=r"expected a finite float32 value, got 1e\+39"):
        buf._core.add(0, 1e39, frame(), False, False, 1)
    assert_same_state(before, snapshot(buf))
