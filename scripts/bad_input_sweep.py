"""Bad-input sweep: every generated malformed input (tests/bad_inputs.py) through the command
lines, in-process; prints the counts docs/RELIABILITY.md records and every case that failed.

    python scripts/bad_input_sweep.py [--keep DIR] [-v]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import bad_inputs  # noqa: E402  (tests/ is not a package)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", type=Path, help="write the cases here and keep them")
    p.add_argument("-v", "--verbose", action="store_true", help="print every error line")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        t0 = time.monotonic()
        cases = bad_inputs.make_cases(base)
        outcomes = [bad_inputs.run_case(c) for c in cases]
        seconds = time.monotonic() - t0
    by_group = collections.defaultdict(lambda: [0, 0, 0])
    for o in outcomes:
        row = by_group[o.case.group]
        row[0] += 1
        row[1] += o.clear
        row[2] += o.traceback
        if args.verbose or not o.clear:
            mark = "ok  " if o.clear else "FAIL"
            first = o.err.strip().splitlines()[0] if o.err.strip() else ""
            print(f"{mark} {o.case.name}: exit {o.code}: {first[:150]} {o.problems or ''}")
    print(f"\n{'group':12s} {'tried':>6s} {'clear':>6s} {'tracebacks':>10s}")
    for group, (n, clear, tb) in by_group.items():
        print(f"{group:12s} {n:6d} {clear:6d} {tb:10d}")
    total = [sum(r[i] for r in by_group.values()) for i in range(3)]
    print(f"{'all':12s} {total[0]:6d} {total[1]:6d} {total[2]:10d}   ({seconds:.0f} s)")
    return 0 if total[0] == total[1] else 1


if __name__ == "__main__":
    sys.exit(main())
