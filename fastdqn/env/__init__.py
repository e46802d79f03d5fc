"""Stage 1, the emulator: Atari envs with the DeepMind wrappers, N of them stepped together
(``VectorEnv``), and their snapshots for resume. Imports fastdqn.frames (the wrappers preprocess)."""

from fastdqn.env.spec import EnvSpec, make_env, make_env_from_spec
from fastdqn.env.vector import StepResult, VectorEnv, WorkerDied

__all__ = ["EnvSpec", "StepResult", "VectorEnv", "WorkerDied", "make_env", "make_env_from_spec"]
