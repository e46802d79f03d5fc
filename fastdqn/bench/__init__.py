"""fastdqn's bench suite: every hot path timed side by side against a
seed-style baseline. `fastdqn bench` (see cli.py) and the pytest-benchmark
files under bench/ share the same cases (groups/), so work is defined once.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli import add_arguments as _add

    _add(parser)


def run(args: argparse.Namespace) -> int:
    from .cli import run as _run

    return _run(args)
