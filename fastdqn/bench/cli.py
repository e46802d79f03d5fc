"""`fastdqn bench`: argument parsing and the run entry point."""

from __future__ import annotations

import argparse
import sys

from fastdqn.devices import resolve_device

from .config import GROUPS, make_config


def _groups(text: str) -> tuple[str, ...]:
    names = tuple(g.strip() for g in text.split(",") if g.strip())
    bad = [g for g in names if g not in GROUPS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(GROUPS)}, got {text!r}")
    return names


def _int_at_least(lo: int):
    """An argparse type: an integer >= lo."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Measure fastdqn train end to end and every hot path against its baseline (the tool a "
                          "user would pick instead, or the book chapter's code), side by side, and print ratio "
                          "tables.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (< 2 min on 2 cores)")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke-test sizes (wins over --quick): checks the plumbing, figures meaningless")
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the tables as Markdown (README format)")
    parser.add_argument("--only", type=_groups, default=GROUPS, metavar="GROUPS",
                        help=f"comma-separated groups to run (default: all of {','.join(GROUPS)})")
    parser.add_argument("--rounds", type=_int_at_least(1), default=None, help="timed rounds per row")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="device for the loss group (default: cuda when available)")
    parser.add_argument("--torch-threads", type=_int_at_least(0), default=None, metavar="N",
                        help="torch.set_num_threads(N) for the run (default 1: steady on a shared machine; "
                             "0 keeps torch's default)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def run(args: argparse.Namespace) -> int:
    from .render import print_report, to_markdown
    from .runner import run_groups

    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    try:
        cfg = make_config(mode, rounds=args.rounds, device=args.device, torch_threads=args.torch_threads)
        resolve_device(cfg.device)
        for flag, path in (("--json", args.json), ("--markdown", args.markdown)):
            if path is not None:  # fail before minutes of timing, not after
                try:
                    open(path, "a").close()
                except OSError as e:
                    raise ValueError(f"{flag}: expected a writable file path, got {path!r}: {e.strerror or e}") from None
    except (ValueError, TypeError, OSError) as exc:
        print(f"fastdqn bench: error: {exc}", file=sys.stderr)
        return 2

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[bench] {msg}", file=sys.stderr, flush=True)

    report = run_groups(cfg, args.only, log)
    print_report(report)
    if args.json:
        _write(args.json, report.to_json())
    if args.markdown:
        _write(args.markdown, to_markdown(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastdqn bench")
    add_arguments(parser)
    return run(parser.parse_args(argv))
