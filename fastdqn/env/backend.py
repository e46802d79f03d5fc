"""Which vector env steps a run's envs: ``"ale"`` (ale-py's C++ threads, fastdqn.env.ale_vector)
for the Atari games it can run, ``"process"`` (fastdqn.env.vector: any gymnasium env, emulators
that snapshot for an exact --resume, videos) for the rest. ``"auto"`` picks ``ale`` where it can."""

from __future__ import annotations

from fastdqn.env.ale_vector import AleVectorEnv, ale_backend_problem, default_threads
from fastdqn.env.spec import EnvSpec
from fastdqn.env.vector import VectorEnv, default_workers

BACKENDS = ("auto", "ale", "process")


def resolve_backend(spec: EnvSpec, backend: str = "auto", *, video: bool = False) -> str:
    """``"ale"`` or ``"process"``; ValueError when ``"ale"`` is asked for a spec it cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"env_backend: expected one of {BACKENDS}, got {backend!r}")
    problem = ale_backend_problem(spec, video)
    if backend == "ale" and problem:
        raise ValueError(f"env_backend: 'ale' cannot run {spec.env_id}: {problem} (use 'process' or 'auto')")
    if backend == "auto":
        return "process" if problem else "ale"
    return backend


def open_vector_env(spec: EnvSpec, num_envs: int, *, backend: str = "auto", num_workers: int | None = None,
                    seed: int = 0, video: tuple | None = None):
    """(envs, backend, workers): the vector env, the backend it is and its worker count (emulator
    threads for ``ale``, processes for ``process``; None picks the backend's default)."""
    backend = resolve_backend(spec, backend, video=video is not None)
    if backend == "ale":
        threads = default_threads(num_envs) if num_workers is None else max(1, num_workers)
        return AleVectorEnv(spec, num_envs, num_threads=threads, seed=seed), backend, threads
    workers = default_workers(num_envs) if num_workers is None else num_workers
    return VectorEnv(spec, num_envs, num_workers=workers, seed=seed, video=video), backend, workers
