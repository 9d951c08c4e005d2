"""``python -m devicecheck OUT [--device cuda|cpu] [--size paper|small] [--budget-s S]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from devicecheck import run_checks
from devicecheck.runner import SECTIONS
from devicecheck.sizes import PRESETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devicecheck",
        description="Check the solver, the emulators, DDP training and the timing stage on a device.",
    )
    parser.add_argument("out", type=Path, help="folder for gpu-check.json and gpu-check.md")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--size", choices=tuple(PRESETS), help="default: paper on cuda, small on cpu")
    parser.add_argument("--budget-s", type=float, help="seconds for the whole check (default: the preset's)")
    parser.add_argument("--world", type=int, help="training processes (default: every GPU; 2 on the CPU)")
    parser.add_argument("--work", type=Path, help="folder for the mini data set (kept; default: temporary)")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary work folder")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="the parts to run (default: all; e.g. the measurements alone: solver emulators)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    report = run_checks(
        args.device,
        args.out,
        size=args.size,
        budget_s=args.budget_s,
        world=args.world,
        work=args.work,
        keep_work=args.keep_work,
        sections=tuple(args.sections),
    )
    failed = [c for c in report.checks if not c.passed]
    for c in failed:
        print(f"FAILED {c.section}: {c.name}: {c.value} (limit {c.limit}) {c.detail[-500:]}", file=sys.stderr)
    print(f"{len(report.checks) - len(failed)}/{len(report.checks)} checks passed; {args.out}/gpu-check.md")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
