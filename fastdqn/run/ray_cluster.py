"""The Ray cluster a ``--ray`` run uses: joining one at an address, or starting a private one on
this machine bound to 127.0.0.1, so that its workers import the fastdqn this process runs.

Ray is imported here (and by the actors) only: ``import fastdqn`` and non-Ray runs never load it.
"""

from __future__ import annotations

import contextlib
import os
import socket

from fastdqn import _native
from fastdqn.run.config import ray_host_port

RAY_EXTRA = 'the Ray extra: pip install "fastdqn[ray]"'
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ray_module():
    try:
        import ray
    except ImportError:
        raise ValueError(f"ray: --ray needs {RAY_EXTRA}") from None
    return ray


def connect(address: str | None, num_cpus: int):
    """Connect to the Ray cluster at ``address`` ("auto": the one ``ray start`` left on this
    machine; "HOST:PORT"; "ray://HOST:PORT"), or with ``None`` start a private one on this
    machine with ``num_cpus`` CPUs, bound to 127.0.0.1. A Ray this process already initialized
    (the Python API's caller did) is used as it is. Returns (ray, the address to watch, started)."""
    ray = ray_module()
    if ray.is_initialized():
        return ray, _gcs_address(ray), False
    if address is None:
        start_local(num_cpus)
        return ray, _gcs_address(ray), True
    where = ray_host_port(address)
    if where is not None:
        host, port = where
        problem = unreachable(host, port)
        if problem:
            raise ValueError(f"ray: expected a Ray cluster at {address}, got {problem} "
                             f"(start one with `ray start --head`, or pass --ray alone for one on this machine)")
    try:
        init_ray(address)
    except ConnectionError as e:
        raise ValueError(f"ray: expected a Ray cluster at {address}, got {str(e).splitlines()[0]}") from None
    # a Ray Client (ray://) reaches the cluster through its own server: watch that one
    return ray, address if address.startswith("ray://") else _gcs_address(ray), False


def start_local(num_cpus: int) -> None:
    """A new private cluster on this machine ("local": never one `ray start` left here), bound
    to 127.0.0.1, with ``num_cpus`` CPUs and no dashboard."""
    with loopback_only():
        init_ray("local", num_cpus=num_cpus, include_dashboard=False)


def init_ray(address: str, **kwargs) -> None:
    """``ray.init`` whose workers import the fastdqn this process runs. Ray puts the driver's
    current folder first on its workers' ``sys.path``: from a source checkout they would import
    its uncompiled package. So the call runs from the folder that holds this fastdqn."""
    ray, here = ray_module(), os.getcwd()
    os.chdir(os.path.dirname(_native.PACKAGE_DIR))
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False, **kwargs)
    finally:
        os.chdir(here)


@contextlib.contextmanager
def loopback_only():
    """Ray binds a single-machine cluster started meanwhile to 127.0.0.1 only with its
    "cluster" switch off: the environment variable for its processes, and its constant, which
    Ray reads when it is imported, for this one if Ray is imported already. Both are put back."""
    import ray._private.ray_constants as constants

    old_env, old_const = os.environ.get(LOOPBACK_SWITCH), constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_SWITCH] = "0"
    setattr(constants, "ENABLE_RAY_CLUSTER", False)
    try:
        yield
    finally:
        setattr(constants, "ENABLE_RAY_CLUSTER", old_const)
        if old_env is None:
            del os.environ[LOOPBACK_SWITCH]
        else:
            os.environ[LOOPBACK_SWITCH] = old_env


def unreachable(host: str, port: int, timeout: float = 3.0) -> str | None:
    """Why nothing answers at host:port (None: something listens): ray.init would retry for minutes."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"nothing answering there ({e.strerror or e})"


def _gcs_address(ray) -> str:
    return ray.get_runtime_context().gcs_address
