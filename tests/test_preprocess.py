"""Preprocessing backends against an exact rational reference and OpenCV: the book chapter's float
pipeline for RGB screens, INTER_AREA of the uint8 image for ALE's grey screens."""

import os
import threading
import time
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastdqn.frames import preprocess as P


def area_matrix(in_len, out_len):
    """W[o, i] * out_len / in_len ... as integers: overlap of input cell i with output cell o,
    in units of 1/out_len, from the textbook definition (output o spans [o s, (o+1) s), s = in/out)."""
    s = Fraction(in_len, out_len)
    w = np.zeros((out_len, in_len), np.int64)
    for o in range(out_len):
        lo, hi = o * s, (o + 1) * s
        for i in range(int(lo), min(in_len, int(np.ceil(hi)))):
            overlap = min(hi, i + 1) - max(lo, i)
            if overlap > 0:
                w[o, i] = overlap * out_len  # an integer: endpoints are multiples of 1/out_len
    return w


def exact_reference(frame, prev=None, layout="crop"):
    """floor of the exact area average of luma (0.299, 0.587, 0.114): the kernels' definition."""
    img = frame if prev is None else np.maximum(frame, prev)
    luma = img.astype(np.int64) @ np.array([299, 587, 114])  # 1000 * luma, exact
    h = img.shape[0]
    rows = area_matrix(h, 110 if layout == "crop" else 84)
    if layout == "crop":
        rows = rows[18:102]
    cols = area_matrix(160, 84)
    total = rows @ luma @ cols.T
    return (total // (1000 * h * 160)).astype(np.uint8)


def exact_grey_reference(frame, prev=None, layout="crop"):
    """The exact area average of ALE's grey levels, rounded half up: the kernels' definition for grey screens."""
    img = (frame if prev is None else np.maximum(frame, prev)).astype(np.int64)
    h = img.shape[0]
    rows = area_matrix(h, 110 if layout == "crop" else 84)
    if layout == "crop":
        rows = rows[18:102]
    total = rows @ img @ area_matrix(160, 84).T
    units = h * 160
    return ((2 * total + units) // (2 * units)).astype(np.uint8)


def all_frames(atari_frames):
    return np.concatenate(list(atari_frames.values()))


@pytest.mark.parametrize("layout", P.LAYOUTS)
@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_kernels_equal_exact_reference_on_real_frames(atari_frames, backend, layout):
    if backend not in P.backends():
        pytest.skip(f"{backend} not built")
    for game, frames in atari_frames.items():
        cur, prev = np.ascontiguousarray(frames[1::2]), np.ascontiguousarray(frames[0::2])
        got = P.process_batch(cur, prev, layout=layout, backend=backend)
        got_single = P.process_batch(cur, layout=layout, backend=backend)
        for i in range(len(cur)):
            np.testing.assert_array_equal(got[i], exact_reference(cur[i], prev[i], layout), err_msg=game)
            np.testing.assert_array_equal(got_single[i], exact_reference(cur[i], None, layout), err_msg=game)


@pytest.mark.parametrize("layout", P.LAYOUTS)
def test_every_backend_within_one_grey_level_of_chapter_pipeline(atari_frames, layout):
    frames = all_frames(atari_frames)
    cur, prev = np.ascontiguousarray(frames[1::2]), np.ascontiguousarray(frames[0::2])
    chapter = np.stack([P.chapter_process(np.maximum(c, p), layout) for c, p in zip(cur, prev)])
    for backend in P.backends():
        got = P.process_batch(cur, prev, layout=layout, backend=backend)
        diff = np.abs(got.astype(int) - chapter)
        assert diff.max() <= 1, backend


def test_opencv_backend_is_the_chapter_pipeline(atari_frames):
    frames = atari_frames["PongNoFrameskip-v4"]
    got = P.process_batch(frames, backend="opencv")
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(got[i], P.chapter_process(f))


@settings(max_examples=40, deadline=None)
@given(
    frames=st.integers(210, 250).flatmap(lambda h: arrays(np.uint8, (2, 210 if h < 230 else 250, 160, 3))),
    layout=st.sampled_from(P.LAYOUTS),
    pool=st.booleans(),
)
def test_cpp_equals_numba_equals_reference_on_random_frames(frames, layout, pool):
    cur, prev = frames[:1], (frames[1:] if pool else None)
    ref = exact_reference(cur[0], None if prev is None else prev[0], layout)
    for backend in ["cpp", "numba"]:
        if backend in P.backends():
            np.testing.assert_array_equal(P.process_batch(cur, prev, layout=layout, backend=backend)[0], ref)


@pytest.mark.parametrize("layout", P.LAYOUTS)
@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_grey_kernels_equal_exact_reference_on_real_grey_screens(atari_grey_frames, backend, layout):
    if backend not in P.backends():
        pytest.skip(f"{backend} not built")
    for game, frames in atari_grey_frames.items():
        cur, prev = np.ascontiguousarray(frames[1::2]), np.ascontiguousarray(frames[0::2])
        got = P.process_batch(cur, prev, layout=layout, backend=backend)
        got_single = P.process_batch(cur, layout=layout, backend=backend)
        for i in range(len(cur)):
            np.testing.assert_array_equal(got[i], exact_grey_reference(cur[i], prev[i], layout), err_msg=game)
            np.testing.assert_array_equal(got_single[i], exact_grey_reference(cur[i], None, layout), err_msg=game)


@pytest.mark.parametrize("layout", P.LAYOUTS)
def test_grey_screens_within_one_level_of_opencv(atari_grey_frames, layout):
    """AtariPreprocessing's order: ALE's grey screens, max of two, cv2.resize INTER_AREA of the uint8 image."""
    frames = all_frames(atari_grey_frames)
    cur, prev = np.ascontiguousarray(frames[1::2]), np.ascontiguousarray(frames[0::2])
    cv = np.stack([P.chapter_process(np.maximum(c, p), layout) for c, p in zip(cur, prev)])
    for backend in P.backends():
        got = P.process_batch(cur, prev, layout=layout, backend=backend)
        assert np.abs(got.astype(int) - cv).max() <= 1, backend
        assert (got == cv).mean() > 0.99, backend  # OpenCV's float rounding differs only at halves


@settings(max_examples=40, deadline=None)
@given(
    frames=st.sampled_from([210, 250]).flatmap(lambda h: arrays(np.uint8, (2, h, 160))),
    layout=st.sampled_from(P.LAYOUTS),
    pool=st.booleans(),
)
def test_grey_cpp_equals_numba_equals_reference_on_random_screens(frames, layout, pool):
    cur, prev = frames[:1], (frames[1:] if pool else None)
    ref = exact_grey_reference(cur[0], None if prev is None else prev[0], layout)
    for backend in ["cpp", "numba"]:
        if backend in P.backends():
            np.testing.assert_array_equal(P.process_batch(cur, prev, layout=layout, backend=backend)[0], ref)


def test_process_frame_and_out_and_threads(atari_frames):
    frames = atari_frames["BreakoutNoFrameskip-v4"]
    out = np.empty((84, 84), np.uint8)
    res = P.process_frame(frames[1], frames[0], out=out)
    assert res is out
    np.testing.assert_array_equal(out, exact_reference(frames[1], frames[0]))
    batch_out = np.empty((len(frames), 84, 84), np.uint8)
    one = P.process_batch(frames, threads=1)
    many = P.process_batch(frames, threads=4, out=batch_out)
    assert many is batch_out
    np.testing.assert_array_equal(one, many)


def test_the_thread_pool_serves_several_callers_and_a_forked_child(atari_frames):
    """Batches run on a pool of threads started once. Two Python threads calling at once get the
    same results as one (the second runs its chunks itself), and a child made by fork(), whose
    pool threads do not exist, computes inline instead of hanging."""
    frames = np.concatenate([atari_frames["BreakoutNoFrameskip-v4"]] * 4)
    want = P.process_batch(frames, threads=1)
    got, errors = [], []

    def call():
        try:
            for _ in range(20):
                got.append(P.process_batch(frames, threads=4))
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)
    workers = [threading.Thread(target=call) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors and len(got) == 60
    for g in got:
        np.testing.assert_array_equal(g, want)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the batch is right
        ok = np.array_equal(P.process_batch(frames, threads=4), want)
        os._exit(0 if ok else 1)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("a forked child hung in process_batch")
    assert os.waitstatus_to_exitcode(status) == 0


# Bad input: tests/test_bad_input_core.py.


def test_backends_lists_the_built_ones():
    assert P.backends()[-2:] == ["numba", "opencv"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.default_backend() == P.backends()[0]


def test_process_any_takes_atari_screens_to_the_kernel_and_other_sizes_to_opencv(atari_frames):
    """RGB image envs of any size: Atari-sized screens get the fused kernel, others OpenCV's
    uint8 luma + INTER_AREA (the common fast path), both uint8 [84, 84]."""
    import cv2

    frame = atari_frames["PongNoFrameskip-v4"][5]
    np.testing.assert_array_equal(P.process_any(frame), P.process_frame(frame, layout="full"))
    small = np.ascontiguousarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    want = cv2.resize(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_AREA)
    got = P.process_any(small)
    assert got.shape == (84, 84) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"frame: expected an RGB image \(H, W, 3\) uint8"):
        P.process_any(np.zeros((10, 10), np.uint8))
