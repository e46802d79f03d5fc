"""fastdqn.frames.cuda and fastdqn.replay.gather: the CUDA preprocessing kernel and replay gather against plain references.

The references are numpy integer code written from the formula (no shared code with the
kernels). Tests marked gpu run the kernels and skip without a CUDA device or without the built
fastdqn._cuda module; the rest run anywhere: input validation of the torch wrapper, and the
kernels' phases run serially on the host (fastdqn._cuda.emulate_*) when the module is built.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from fastdqn.frames import cuda as fcuda
from fastdqn.replay.gather import gather_windows

try:
    from fastdqn import _cuda
except ImportError:
    _cuda = None

needs_module = pytest.mark.skipif(_cuda is None, reason="fastdqn._cuda is not built")


def gpu_test(fn):
    """Marked gpu; skipped without a device or without fastdqn._cuda."""
    reason = "needs CUDA and fastdqn._cuda"
    return pytest.mark.gpu(pytest.mark.skipif(not fcuda.available(), reason=reason)(fn))


# ---------------------------------------------------------------- references


@functools.lru_cache(maxsize=None)
def area_weights(in_len: int, out_len: int):
    """Integer INTER_AREA taps as a dense [out_len, in_len] matrix, and their per-row sum b."""
    g = math.gcd(in_len, out_len)
    a, b = out_len // g, in_len // g
    w = np.zeros((out_len, in_len), dtype=np.int64)
    for o in range(out_len):
        for i in range(in_len):
            w[o, i] = max(0, min((i + 1) * a, (o + 1) * b) - max(i * a, o * b))
    assert (w.sum(axis=1) == b).all()  # the reference's own sanity, not an input check
    return w, b


def reference_process(frames: np.ndarray, prev: np.ndarray | None = None, layout: str = "crop"):
    """floor(exact area average of 0.299R+0.587G+0.114B), in int64 numpy."""
    x = frames if prev is None else np.maximum(frames, prev)
    x = x.astype(np.int64)
    luma = 299 * x[..., 0] + 587 * x[..., 1] + 114 * x[..., 2]  # [N, H, 160]
    h = frames.shape[1]
    wy, by = area_weights(h, 110 if layout == "crop" else 84)
    if layout == "crop":
        wy = wy[18:102]
    wx, bx = area_weights(160, 84)
    s = wy @ luma @ wx.T
    return (s // (1000 * by * bx)).astype(np.uint8)


def reference_gather(storage: np.ndarray, index: np.ndarray) -> np.ndarray:
    return storage[np.clip(index, 0, None)] * (index >= 0)[..., None, None].astype(np.uint8)


def random_frames(n: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.integers(0, 256, size=(n, h, 160, 3), dtype=np.uint8)
    f[0] = 255  # largest sums: must not overflow uint32
    if n > 1:
        f[1] = 0
    return f


def ale_frames(n: int = 48):
    """Real Pong frames and their predecessors (the MaxAndSkip pair), every third frame."""
    from fastdqn.bench.inputs import game_frames

    return game_frames("PongNoFrameskip-v4", n, seed=0, warmup=0, every=3)


CASES = [(h, layout) for h in (210, 250) for layout in ("crop", "full")]


def test_reference_matches_opencv_within_one_level():
    cv2 = pytest.importorskip("cv2")
    f = random_frames(3, 210, seed=1)
    ours = reference_process(f, layout="crop")
    for k in range(3):
        luma = (f[k].astype(np.float32) * np.array([0.299, 0.587, 0.114], np.float32)).sum(-1)
        seed = cv2.resize(luma, (84, 110), interpolation=cv2.INTER_AREA)[18:102].astype(np.uint8)
        assert np.abs(ours[k].astype(int) - seed.astype(int)).max() <= 1


# ---------------------------------------------------------------- host emulation (no GPU)


@needs_module
@pytest.mark.parametrize("h,layout", CASES)
@pytest.mark.parametrize("vectorized", [True, False])
@pytest.mark.parametrize("with_prev", [False, True])
def test_emulated_kernel_matches_reference(h, layout, vectorized, with_prev):
    f = random_frames(4, h, seed=h)
    p = random_frames(4, h, seed=h + 1) if with_prev else None
    got = _cuda.emulate_preprocess(f, p, layout, vectorized)
    np.testing.assert_array_equal(got, reference_process(f, p, layout))


@needs_module
@pytest.mark.parametrize("layout", ["crop", "full"])
def test_emulated_kernel_matches_cpp_kernel_on_pong(layout):
    data = ale_frames()
    from fastdqn.frames import preprocess

    if "cpp" not in getattr(preprocess, "backends", lambda: [])():
        pytest.skip("fastdqn._core (cpp backend) not built")
    f, p = data
    want = preprocess.process_batch(f, p, layout=layout, backend="cpp")
    np.testing.assert_array_equal(_cuda.emulate_preprocess(f, p, layout, True), want)


def _games_expected(frames, prev, layout):
    """The C++ kernel's output when fastdqn._core is built, else the numpy reference."""
    from fastdqn.frames import preprocess

    if "cpp" in preprocess.backends():
        return preprocess.process_batch(frames, prev, layout=layout, backend="cpp")
    return reference_process(frames, prev, layout)


@needs_module
@pytest.mark.parametrize("layout", ["crop", "full"])
def test_emulated_kernel_matches_cpp_on_four_games(atari_frames, layout):
    for game, frames in atari_frames.items():
        prev = np.ascontiguousarray(np.roll(frames, 1, axis=0))
        got = _cuda.emulate_preprocess(frames, prev, layout, True)
        np.testing.assert_array_equal(got, _games_expected(frames, prev, layout), err_msg=game)


@needs_module
@pytest.mark.parametrize("vectorized", [True, False])
def test_emulated_gather_matches_reference(vectorized):
    rng = np.random.default_rng(3)
    storage = rng.integers(0, 256, size=(20, 84, 84), dtype=np.uint8)
    index = rng.integers(-1, 20, size=(7, 5)).astype(np.int64)
    index[0, :2] = -1
    got = _cuda.emulate_gather(storage, index, vectorized)
    np.testing.assert_array_equal(got, reference_gather(storage, index))


@needs_module
def test_module_imports_without_gpu_and_reports_devices():
    assert isinstance(_cuda.device_count(), int)
    assert _cuda.runtime_version() >= 12000
    if _cuda.device_count() == 0:
        assert _cuda.device_error()  # says why (no driver / no device)
        with pytest.raises(RuntimeError):
            _cuda.preprocess(0, 0, 0, 1, 210, "crop", 0, 0)


@needs_module
def test_module_rejects_bad_geometry():
    with pytest.raises(ValueError, match="layout"):
        _cuda.preprocess(0, 0, 0, 1, 210, "wide", 0, 0)
    with pytest.raises(ValueError, match="height"):
        _cuda.emulate_preprocess(np.zeros((1, 300, 160, 3), np.uint8))


# ---------------------------------------------------------------- wrapper validation (no GPU)


def test_available_is_bool():
    assert isinstance(fcuda.available(), bool)


@pytest.mark.parametrize(
    "frames,err,match",
    [
        (np.zeros((1, 210, 160, 3), np.uint8), TypeError, "torch.Tensor"),
        (torch.zeros((1, 210, 160, 3), dtype=torch.float32), TypeError, "uint8"),
        (torch.zeros((1, 200, 160, 3), dtype=torch.uint8), ValueError, "shape"),
        (torch.zeros((210, 160, 3), dtype=torch.uint8), ValueError, "shape"),
        (torch.zeros((1, 210, 160, 3), dtype=torch.uint8), ValueError, "CUDA"),
    ],
)
def test_process_batch_cuda_validates(frames, err, match):
    with pytest.raises(err, match=match):
        fcuda.process_batch_cuda(frames)


def test_process_batch_cuda_rejects_layout():
    with pytest.raises(ValueError, match="layout"):
        fcuda.process_batch_cuda(torch.zeros((1, 210, 160, 3), dtype=torch.uint8), layout="wide")


def test_gather_windows_validates():
    with pytest.raises(TypeError, match="torch.Tensor"):
        gather_windows(np.zeros((4, 84, 84), np.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(TypeError, match="uint8"):
        gather_windows(torch.zeros((4, 84, 84)), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="CUDA"):
        gather_windows(torch.zeros((4, 84, 84), dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))


# ---------------------------------------------------------------- on the GPU


def _cu(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


@gpu_test
@pytest.mark.parametrize("h,layout", CASES)
@pytest.mark.parametrize("with_prev", [False, True])
def test_kernel_matches_reference(h, layout, with_prev):
    f = random_frames(33, h, seed=h)
    p = random_frames(33, h, seed=h + 7) if with_prev else None
    got = fcuda.process_batch_cuda(_cu(f), None if p is None else _cu(p), layout=layout)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(got.cpu().numpy(), reference_process(f, p, layout))


@gpu_test
def test_kernel_unaligned_input_uses_byte_path():
    f = random_frames(5, 210, seed=11)
    flat = torch.zeros(f.size + 1, dtype=torch.uint8, device="cuda")
    flat[1:] = _cu(f).reshape(-1)
    frames = flat[1:].view(f.shape)  # data_ptr is 1 byte past an aligned block
    assert frames.data_ptr() % 16 != 0
    got = fcuda.process_batch_cuda(frames)
    np.testing.assert_array_equal(got.cpu().numpy(), reference_process(f))


@gpu_test
@pytest.mark.parametrize("layout", ["crop", "full"])
def test_kernel_matches_cpp_kernel_on_pong(layout):
    data = ale_frames()
    from fastdqn.frames import preprocess

    f, p = data
    want = reference_process(f, p, layout)
    if "cpp" in getattr(preprocess, "backends", lambda: [])():
        want = preprocess.process_batch(f, p, layout=layout, backend="cpp")
        np.testing.assert_array_equal(want, reference_process(f, p, layout))
    got = fcuda.process_batch_cuda(_cu(f), _cu(p), layout=layout)
    np.testing.assert_array_equal(got.cpu().numpy(), want)


@gpu_test
def test_kernel_writes_into_storage_slots_on_a_side_stream():
    f = random_frames(4, 210, seed=5)
    storage = torch.full((10, 84, 84), 7, dtype=torch.uint8, device="cuda")
    slots = torch.tensor([9, 0, 4, 2], dtype=torch.int64, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        frames = _cu(f)
        fcuda.process_batch_cuda(frames, out=storage, out_index=slots)
    torch.cuda.current_stream().wait_stream(side)
    want = reference_process(f)
    got = storage.cpu().numpy()
    for k, s in enumerate([9, 0, 4, 2]):
        np.testing.assert_array_equal(got[s], want[k])
    for s in (1, 3, 5, 6, 7, 8):
        assert (got[s] == 7).all()


@gpu_test
def test_kernel_validates_cuda_inputs():
    f = torch.zeros((2, 210, 160, 3), dtype=torch.uint8, device="cuda")
    with pytest.raises(ValueError, match="contiguous"):
        fcuda.process_batch_cuda(f.transpose(1, 2).contiguous().transpose(1, 2))
    with pytest.raises(ValueError, match="shape"):
        fcuda.process_batch_cuda(f, f[:1])
    with pytest.raises(ValueError, match="shape"):
        fcuda.process_batch_cuda(f, out=torch.empty((2, 84, 83), dtype=torch.uint8, device="cuda"))
    with pytest.raises(ValueError, match="out"):
        fcuda.process_batch_cuda(f, out_index=torch.zeros(2, dtype=torch.int64, device="cuda"))
    assert fcuda.process_batch_cuda(f[:0]).shape == (0, 84, 84)


@gpu_test
@pytest.mark.parametrize("aligned", [True, False])
def test_gather_windows_matches_torch(aligned):
    g = torch.Generator(device="cuda").manual_seed(0)
    base = torch.randint(0, 256, (50 * 7056 + 1,), dtype=torch.uint8, device="cuda", generator=g)
    storage = (base[:-1] if aligned else base[1:]).view(50, 84, 84)
    index = torch.randint(-1, 50, (32, 5), device="cuda", generator=g)
    index[0] = -1
    got = gather_windows(storage, index)
    want = storage[index.clamp(min=0)] * (index >= 0)[..., None, None].to(torch.uint8)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@gpu_test
def test_gather_windows_checks_index_range():
    storage = torch.zeros((4, 84, 84), dtype=torch.uint8, device="cuda")
    with pytest.raises(ValueError, match=r"\[-1, 4\)"):
        gather_windows(storage, torch.tensor([[0, 4]], device="cuda"))
    with pytest.raises(ValueError, match=r"\[-1, 4\)"):
        gather_windows(storage, torch.tensor([[-2, 0]], device="cuda"))
    # unchecked: out-of-range indices read nothing and give zero frames
    storage.fill_(9)
    out = gather_windows(storage, torch.tensor([[5, 1]], device="cuda"), check=False)
    assert out[0, 0].sum().item() == 0 and (out[0, 1] == 9).all()


@gpu_test
@pytest.mark.parametrize("layout", ["crop", "full"])
def test_kernel_matches_cpp_on_four_games(atari_frames, layout):
    for game, frames in atari_frames.items():
        prev = np.ascontiguousarray(np.roll(frames, 1, axis=0))
        got = fcuda.process_batch_cuda(_cu(frames), _cu(prev), layout=layout).cpu().numpy()
        np.testing.assert_array_equal(got, _games_expected(frames, prev, layout), err_msg=game)
        got = fcuda.process_batch_cuda(_cu(frames), layout=layout).cpu().numpy()
        np.testing.assert_array_equal(got, _games_expected(frames, None, layout), err_msg=game)
