"""Save and restore a ReplayBuffer exactly (``--save-replay``): its storage, streams and RNG.

A state is a plain dict of numpy arrays, ints and strings, so ``np.savez`` can hold it without
pickling. ``check_state`` validates all of it before the buffer is touched, including that the
per-slot metadata describes real episodes (a corrupt file must not make stacks span episodes).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping

import numpy as np

from fastdqn.atomic import atomic_write

VERSION = 1
HAS, TERM, TRUNC = 1, 2, 4  # TransitionFlags in csrc/replay.hpp
CONFIG = ("version", "capacity", "num_envs", "stack", "frame_shape", "pad")
ARRAYS = ("frames", "actions", "rewards", "flags", "epos", "written", "open", "rng")
# absent from files saved before n-step returns and prioritized replay: 1-step, uniform
OPTIONAL = {"n_step": 1, "gamma": None, "prioritized": False, "priorities": None, "max_priority": None,
            "alpha": None, "eps": None}
KEYS = frozenset(CONFIG + ARRAYS + ("len",))


def collect(buf, copy: bool = True) -> dict:
    """The buffer's state; ``copy=False`` hands out views of the live storage (for an immediate save)."""
    state = {k: (v.copy() if copy else v) for k, v in buf._core.arrays().items()}
    if buf._frames is not None:  # device-resident frames live in a torch tensor, not in the C++ store
        state["frames"] = buf._frames.cpu().numpy()
    streams = buf._core.streams()
    state.update(
        version=VERSION, capacity=buf.capacity, num_envs=buf.num_envs, stack=buf.stack,
        frame_shape=tuple(buf.frame_shape), pad=buf.pad, len=len(buf), n_step=buf.n_step, gamma=buf.gamma,
        written=np.array([w for w, _ in streams], np.int64), open=np.array([o for _, o in streams], np.bool_),
        rng=np.array(buf._core.rng_state, np.uint64),
    )
    if buf.prioritized:
        state["priorities"], state["max_priority"] = buf._core.priorities()
        state.update(prioritized=1, alpha=buf.alpha, eps=buf.eps)  # an int: np.savez keeps it as one
    return state


def _scalar(d, key, kind):
    """An int or str from a dict or from np.load (where it comes back as a 0-d array)."""
    v = d[key]
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if kind is int and isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    if kind is str and isinstance(v, (str, np.str_)):
        return str(v)
    if kind is float and isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return float(v)
    raise TypeError(f"replay state[{key!r}]: expected {kind.__name__}, got {type(v).__name__}")


def config_of(d: Mapping) -> dict:
    """The constructor config a state was saved with (validated types, not values)."""
    if not isinstance(d, Mapping):
        raise TypeError(f"replay state: expected a dict, got {type(d).__name__}")
    missing, extra = sorted(KEYS - d.keys()), sorted(set(d.keys()) - KEYS - OPTIONAL.keys())
    if missing or extra:
        raise ValueError(f"replay state: expected keys {sorted(KEYS)}, got missing {missing}, unexpected {extra}")
    shape = np.asarray(d["frame_shape"])
    if shape.ndim != 1 or shape.dtype.kind not in "iu":
        raise TypeError(f"replay state['frame_shape']: expected a tuple of ints, got {d['frame_shape']!r}")
    out = {k: _scalar(d, k, int) for k in ("version", "capacity", "num_envs", "stack")}
    out.update(frame_shape=tuple(int(x) for x in shape), pad=_scalar(d, "pad", str),
               n_step=_scalar(d, "n_step", int) if "n_step" in d else OPTIONAL["n_step"],
               prioritized=bool(_scalar(d, "prioritized", int)) if "prioritized" in d else False,
               alpha=_scalar(d, "alpha", float) if "alpha" in d else None,
               eps=_scalar(d, "eps", float) if "eps" in d else None,
               gamma=_scalar(d, "gamma", float) if "gamma" in d else OPTIONAL["gamma"])
    if out["version"] != VERSION:
        raise ValueError(f"replay state: expected format version {VERSION}, got {out['version']}")
    return out


def _array(d, key, dtype, shape):
    a = d[key]
    if not isinstance(a, np.ndarray):
        raise TypeError(f"replay state[{key!r}]: expected a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"replay state[{key!r}]: expected dtype {np.dtype(dtype)}, got {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"replay state[{key!r}]: expected shape {shape}, got {a.shape}")
    return a


def check_state(buf, d: Mapping) -> dict:
    """Validate a state against ``buf``; returns the arrays to restore. Raises before any mutation."""
    cfg = config_of(d)
    for key in ("capacity", "num_envs", "stack", "frame_shape", "pad", "n_step", "gamma", "prioritized", "alpha",
                "eps"):
        mine = tuple(buf.frame_shape) if key == "frame_shape" else getattr(buf, key)
        if key == "gamma" and (cfg[key] is None or buf.n_step == 1):
            continue  # 1-step samples do not use it
        if key in ("alpha", "eps") and not buf.prioritized:
            continue
        if cfg[key] != mine:
            raise ValueError(f"replay state[{key!r}]: expected {mine!r} (this buffer's), got {cfg[key]!r}")
    cap, n = buf.capacity, buf.num_envs
    a = {
        "frames": _array(d, "frames", buf.dtype, (cap, *buf.frame_shape)),
        "actions": _array(d, "actions", np.int32, (cap,)), "rewards": _array(d, "rewards", np.float32, (cap,)),
        "flags": _array(d, "flags", np.uint8, (cap,)), "epos": _array(d, "epos", np.uint8, (cap,)),
        "written": _array(d, "written", np.int64, (n,)), "open": _array(d, "open", np.bool_, (n,)),
        "rng": _array(d, "rng", np.uint64, (4,)),
    }
    if not np.isfinite(a["rewards"]).all():
        raise ValueError("replay state['rewards']: expected finite values, got NaN or inf")
    if (a["actions"] < 0).any():
        raise ValueError(f"replay state['actions']: expected values >= 0, got {a['actions'].min()}")
    if not a["rng"].any():
        raise ValueError("replay state['rng']: expected a non-zero xoshiro state, got all zeros")
    if buf.prioritized:
        a["priorities"] = _array(d, "priorities", np.float64, (cap,))
        a["max_priority"] = _scalar(d, "max_priority", float)
        if not (np.isfinite(a["priorities"]).all() and (a["priorities"] >= 0).all()) or not a["max_priority"] > 0:
            raise ValueError("replay state['priorities']: expected finite values >= 0 and a max_priority > 0")
    valid = sum(_check_stream(buf, a, e, lo, c) for e, (lo, c) in enumerate(_layout(cap, n)))
    if _scalar(d, "len", int) != valid:
        raise ValueError(f"replay state['len']: expected {valid} (counted from the arrays), got {_scalar(d, 'len', int)}")
    return a


def _layout(cap, n):
    """(offset, cap) of each stream, as csrc/replay.hpp splits the capacity."""
    out, lo = [], 0
    for e in range(n):
        c = cap // n + (e < cap % n)
        out.append((lo, c))
        lo += c
    return out


def _check_stream(buf, a, e, lo, cap) -> int:
    """Check one stream's metadata is what start()/add() could have written; return its valid count."""
    w, is_open = int(a["written"][e]), bool(a["open"][e])
    where = f"replay state: stream {e}"
    if not 0 <= w < 2**62:
        raise ValueError(f"{where}: expected written in [0, 2^62), got {w}")
    oldest = max(0, w - cap)
    t = np.arange(oldest, w)
    slots = lo + t % cap
    flags, epos = a["flags"][slots], a["epos"][slots].astype(np.int64)
    unused = slice(lo + w, lo + cap) if w < cap else slice(0, 0)
    if a["flags"][unused].any() or a["epos"][unused].any():
        raise ValueError(f"{where}: expected zero metadata in its {cap - w} unwritten slots, got non-zero")
    if (flags & ~np.uint8(HAS | TERM | TRUNC)).any() or ((flags & (TERM | TRUNC)).astype(bool) & ~(flags & HAS).astype(bool)).any():
        raise ValueError(f"{where}: expected flags made of has/terminated/truncated bits, got {np.unique(flags)}")
    if w and flags[-1]:
        raise ValueError(f"{where}: expected no transition on the last written frame, got flags {flags[-1]}")
    # Frame t+1 continues t's episode exactly when t has a transition; then epos advances by one.
    cont = (flags[:-1] & HAS).astype(bool)
    if (cont != (epos[1:] > 0)).any() or (epos[1:][cont] != np.minimum(epos[:-1][cont] + 1, 255)).any():
        raise ValueError(f"{where}: expected episode positions that follow its transitions, got inconsistent epos")
    if (cont & (flags[1:] != 0) & (flags[:-1] & (TERM | TRUNC)).astype(bool)).any():
        raise ValueError(f"{where}: expected an ended episode's last frame to have no transition")
    ended = w >= 2 and epos[-1] > 0 and bool(flags[-2] & (TERM | TRUNC))
    if is_open != (w >= 1 and not ended):
        raise ValueError(f"{where}: expected open={w >= 1 and not ended} from its frames, got {is_open}")
    ok = (flags[:-1] & HAS).astype(bool) & (t[:-1] - np.minimum(epos[:-1], buf.stack - 1) >= oldest)
    return int((ok & _tail_recorded(flags[:-1], buf.n_step)).sum())


def _tail_recorded(flags: np.ndarray, n: int) -> np.ndarray:
    """Per transition: its n-step tail is stored (transitions t..t+j all recorded, t+j ending the
    episode or j = n - 1), as csrc/replay.hpp's tail() decides."""
    has, end = (flags & HAS).astype(bool), (flags & (TERM | TRUNC)).astype(bool)

    def ahead(x, j):  # x[t + j] for every t (False past the end)
        return np.concatenate([x[j:], np.zeros(min(j, len(x)), bool)])
    run, ok = has.copy(), np.zeros(len(flags), bool)
    for j in range(n):
        run &= ahead(has, j)
        ok |= run & (ahead(end, j) | (j == n - 1))
        run &= ~ahead(end, j)
    return ok


def restore(buf, a: dict) -> None:
    """Write checked arrays into the buffer (no validation left that could fail half-way)."""
    live = buf._core.arrays()
    for key in ("actions", "rewards", "flags", "epos"):
        np.copyto(live[key], a[key])
    if buf._frames is None:
        np.copyto(live["frames"], a["frames"])
    else:
        import torch
        buf._frames.copy_(torch.from_numpy(np.ascontiguousarray(a["frames"])))
    buf._core.set_streams([(int(w), bool(o)) for w, o in zip(a["written"], a["open"])])  # recounts len
    if "priorities" in a:
        buf._core.set_priorities(a["priorities"], a["max_priority"])
    buf._core.rng_state = [int(x) for x in a["rng"]]


def save_atomic(path, state: dict) -> None:
    """np.savez (uncompressed) written crash-safely (fastdqn.atomic): a crash leaves either the
    old file or the new one, never a torn one."""
    atomic_write(path, lambda f: np.savez(f, **state), what="replay file")


def load_file(path) -> dict:
    """Read a saved state; a damaged file raises ValueError naming it."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"replay file: expected a file path, got {type(path).__name__}")
    if os.path.isdir(path):
        raise ValueError(f"replay file: expected a file, got a directory {os.fspath(path)!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"replay file: no such file {os.fspath(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError) as e:
        raise ValueError(f"replay file {os.fspath(path)!r}: expected a ReplayBuffer.save() .npz, got unreadable data ({e})") from e
