"""Single-call ratios of two checkouts of tensorbridge, interleaved, in fresh processes.

    git worktree add /tmp/old <commit>
    python benchmarks/old_vs_new.py --old /tmp/old/src --new src

Each round runs one fresh process per checkout, alternating old and new; each
process times every row against its one-liner (best of 3 repeats, median of 5
rounds) and the script prints the median over rounds for both checkouts. It
answers "did this change make a small call slower?" on a noisy machine, where
two separate runs of ``bench.py`` differ by more than the change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROWS = r"""
import json, timeit
import numpy as np, torch, tensorbridge as tb

a = np.zeros(16, np.float32)
a64 = np.zeros(16)
t = torch.zeros(16)
t64 = torch.zeros(16, dtype=torch.float64)
w = torch.zeros(64, 512, requires_grad=True)
rows = {
    "to_tensor share float32[16]": (lambda: tb.to_tensor(a), lambda: torch.from_numpy(a)),
    "to_tensor share float64[16], PRESERVE": (
        lambda: tb.to_tensor(a64, dtype=tb.PRESERVE), lambda: torch.from_numpy(a64)),
    "to_numpy share float32 tensor[16]": (lambda: tb.to_numpy(t), lambda: t.numpy()),
    "to_numpy share float64 tensor[16], PRESERVE": (
        lambda: tb.to_numpy(t64, dtype=tb.PRESERVE), lambda: t64.numpy()),
    "to_tensor of a tensor needing no change": (
        lambda: tb.to_tensor(t), lambda: torch.as_tensor(t)),
    "to_tensor cast float64[16] -> float32": (
        lambda: tb.to_tensor(a64), lambda: torch.as_tensor(a64, dtype=torch.float32)),
    "to_numpy cast float64 tensor[16] -> float32": (
        lambda: tb.to_numpy(t64), lambda: t64.to(dtype=torch.float32).numpy()),
    "to_numpy of a grad tensor 64x512": (lambda: tb.to_numpy(w), lambda: w.detach().numpy()),
}
result = {}
for name, (ours, theirs) in rows.items():
    ours(), theirs()
    ratios = []
    for _ in range(5):
        mine = min(timeit.repeat(ours, number=5000, repeat=3))
        base = min(timeit.repeat(theirs, number=5000, repeat=3))
        ratios.append(mine / base)
    result[name] = sorted(ratios)[2]
print(json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the old checkout's src folder")
    parser.add_argument("--new", required=True, help="the new checkout's src folder")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        for side in ("old", "new"):
            env = {**os.environ, "PYTHONPATH": os.path.abspath(getattr(args, side))}
            done = subprocess.run(
                [sys.executable, "-c", ROWS], env=env, capture_output=True, text=True, check=False
            )
            if done.returncode:
                sys.exit(f"{side}: {done.stderr[-2000:]}")
            results[side].append(json.loads(done.stdout))
    print(f"{'row':48s} {'old':>6s} {'new':>6s}")
    for name in results["old"][0]:
        old = statistics.median(each[name] for each in results["old"])
        new = statistics.median(each[name] for each in results["new"])
        print(f"{name:48s} {old:6.2f} {new:6.2f}")


if __name__ == "__main__":
    main()
