"""``fastdqn train --ray``: the learner runs in a child process that the CLI's process watches.

Ray ends a driver's process on the spot when the cluster node it is attached to goes away (its
object-store connection breaks): no Python exception, no message. So for Ray runs the CLI starts
the learner as a child, forwards SIGINT, SIGTERM and SIGHUP to it, and passes its exit status
on. A child that ends without reporting one was ended from outside: the CLI then says so in one
line, with the command that continues the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

from fastdqn.run.config import ray_host_port
from fastdqn.run.ray_cluster import unreachable

STATUS_ENV = "FASTDQN_RAY_STATUS"  # in the child: the file it reports its run directory and exit status to


def supervised() -> bool:
    return STATUS_ENV in os.environ


def report(key: str, value) -> None:
    """In a supervised child, tell the watching process ``key`` (``out``: the run directory,
    ``code``: the exit status); elsewhere nothing."""
    path = os.environ.get(STATUS_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"{key}\t{value}\n")


def supervise(argv: list[str], address: str | None) -> int:
    """Run ``fastdqn *argv`` as a child; its exit status, or 1 and a one-line error if it was ended."""
    fd, path = tempfile.mkstemp(prefix="fastdqn-status-")
    os.close(fd)
    try:
        # its own session: a terminal's Ctrl-C reaches it once, forwarded from here
        child = subprocess.Popen([sys.executable, "-m", "fastdqn", *argv], env=os.environ | {STATUS_ENV: path},
                                 start_new_session=True)
        signals = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
        previous = {s: signal.signal(s, lambda signum, _: child.send_signal(signum)) for s in signals}
        try:
            rc = child.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        with open(path) as f:
            status = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
    finally:
        os.unlink(path)
    if "code" in status:
        return int(status["code"])
    out = status.get("out")
    how = (f"continue from last.pt with: fastdqn train --resume {out}"
           if out and os.path.isfile(os.path.join(out, "last.pt")) else "no last.pt was saved yet")
    print(f"fastdqn train: error: ray: {_what_ended(rc, address)}; {how}", file=sys.stderr)
    return 1


def _what_ended(rc: int, address: str | None) -> str:
    if rc < 0:
        return f"the learner's process was killed by {signal.Signals(-rc).name}"
    where = ray_host_port(address) if address else None
    if where is not None and _goes_quiet(where, seconds=15.0):
        return f"the Ray cluster at {address} went away (Ray ended the learner's process, exit status {rc})"
    cluster = f"the Ray cluster at {address}" if address else "this machine's Ray cluster"
    return f"Ray ended the learner's process (exit status {rc}): a node of {cluster} went away"


def _goes_quiet(where: tuple[str, int], seconds: float) -> bool:
    """Whether nothing answers at ``where`` within ``seconds`` (a stopping cluster's head outlives
    its nodes by a few seconds)."""
    import time

    end = time.monotonic() + seconds
    while not unreachable(*where, timeout=1.0):
        if time.monotonic() > end:
            return False
        time.sleep(0.5)
    return True
