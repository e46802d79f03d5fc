"""Save and restore a ReplayBuffer exactly (``--save-replay``): its options, storage, streams and RNG.

A state is a plain dict of numpy arrays, ints, floats and strings, so ``np.savez`` can hold it
without pickling. This module reads and writes it and checks its keys and their types; the C++
store checks every value (the options against its own, the arrays' dtypes and shapes, that the
per-slot metadata describes real episodes, len) before it takes any of it.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping

import numpy as np

from fastdqn import _native
from fastdqn.atomic import atomic_write

# 2: every option is saved (dtype, prioritized, alpha and eps too) and every state has priorities.
# A new option in the core's ReplayOptions is a new key: bump it then.
VERSION = 2
ARRAYS = ("frames", "actions", "rewards", "flags", "epos", "written", "open", "rng", "priorities")
NOT_SAVED = ("seed", "store_frames")  # the state carries the RNG itself; the loader says where frames live


def option_types() -> dict[str, type]:
    """The options a state carries (the core's ReplayOptions but NOT_SAVED), each with its type."""
    cls = _native.core().ReplayOptions
    defaults = cls()
    return {name: type(getattr(defaults, name)) for name, attr in vars(cls).items()
            if isinstance(attr, property) and name not in NOT_SAVED}


def collect(buf, copy: bool = True) -> dict:
    """The buffer's state; ``copy=False`` hands out views of the live storage (for an immediate save)."""
    state = {k: (v.copy() if copy else v) for k, v in buf._core.arrays().items()}
    if buf._frames is not None:  # device-resident frames live in a torch tensor, not in the C++ store
        state["frames"] = buf._frames.cpu().numpy()
    streams = buf._core.streams()
    state.update({name: getattr(buf._options, name) for name in option_types()})
    state["frame_shape"] = tuple(state["frame_shape"])
    state["priorities"], state["max_priority"] = buf._core.priorities()
    state.update(version=VERSION, len=len(buf), written=np.array([w for w, _ in streams], np.int64),
                 open=np.array([o for _, o in streams], np.bool_), rng=np.array(buf._core.rng_state, np.uint64))
    return state


def _scalar(d, key, kind):
    """An int, float, bool or str from a dict or from np.load (where it comes back as a 0-d array)."""
    v = d[key]
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    is_bool = isinstance(v, (bool, np.bool_))
    if kind is int and isinstance(v, (int, np.integer)) and not is_bool:
        return int(v)
    if kind is float and isinstance(v, (float, np.floating, int, np.integer)) and not is_bool:
        return float(v)
    if kind is bool and is_bool:
        return bool(v)
    if kind is str and isinstance(v, (str, np.str_)):
        return str(v)
    raise TypeError(f"replay state[{key!r}]: expected {kind.__name__}, got {type(v).__name__}")


def options_of(d: Mapping) -> dict:
    """The ReplayBuffer options a state was saved with (its keys and their types checked, not
    their values: the store does that)."""
    if not isinstance(d, Mapping):
        raise TypeError(f"replay state: expected a dict, got {type(d).__name__}")
    if "version" in d and _scalar(d, "version", int) != VERSION:
        raise ValueError(f"replay state: expected format version {VERSION}, got {_scalar(d, 'version', int)} "
                         "(written by another fastdqn version)")
    types = option_types()
    keys = {"version", "len", "max_priority", *ARRAYS, *types}
    missing, extra = sorted(keys - d.keys()), sorted(set(d.keys()) - keys)
    if missing or extra:
        raise ValueError(f"replay state: expected keys {sorted(keys)}, got missing {missing}, unexpected {extra}")
    out = {}
    for name, kind in types.items():
        if kind is list:  # frame_shape
            shape = np.asarray(d[name])
            if shape.ndim != 1 or shape.dtype.kind not in "iu":
                raise TypeError(f"replay state[{name!r}]: expected a tuple of ints, got {d[name]!r}")
            out[name] = tuple(int(x) for x in shape)
        else:
            out[name] = _scalar(d, name, kind)
    return out


def _checked_by_core(buf, d: Mapping, load: bool) -> None:
    options = _native.core().ReplayOptions(**options_of(d))
    arrays = {k: d[k] for k in ARRAYS}
    getattr(buf._core, "load_state" if load else "check_state")(
        options, arrays, _scalar(d, "max_priority", float), _scalar(d, "len", int))


def check_state(buf, d: Mapping) -> None:
    """Raise ValueError/TypeError naming what is wrong with state ``d`` for ``buf``."""
    _checked_by_core(buf, d, load=False)


def restore(buf, d: Mapping) -> None:
    """Replace the buffer's contents with state ``d``: checked by the core first, nothing changes when it raises."""
    _checked_by_core(buf, d, load=True)
    if buf._frames is not None:  # the core checked their dtype and shape
        import torch
        buf._frames.copy_(torch.from_numpy(np.ascontiguousarray(d["frames"])))


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
