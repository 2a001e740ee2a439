"""How long `gkd` takes to start, and what it loads: `--version`, `--help` and two subcommands' help,
each in a fresh process (best and median of N wall-clock runs).

    python benchmarks/cli_startup.py [--runs 5]

It times the `gkd` script beside this interpreter (the installed entry point), else the one on
PATH. With PYTHONDONTWRITEBYTECODE set, every start compiles the project's modules again (no
.pyc is kept), which an install never does: the benchmark says so rather than measure that.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

COMMANDS = (["--version"], ["--help"], ["infer", "--help"], ["benchmark", "--help"])
PROBE = ("import sys, json; from gkd_deploy.cli import main\n"
         "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         "print(json.dumps([m for m in ('torch', 'timm', 'onnx', 'numpy', 'cv2') if m in sys.modules]), "
         "file=sys.stderr)")


def measure(args: list[str], runs: int) -> dict:
    gkd = shutil.which("gkd", path=os.path.dirname(sys.executable)) or shutil.which("gkd") or sys.executable
    command = [gkd, *args] if gkd != sys.executable else [sys.executable, "-m", "gkd_deploy.cli.app", *args]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    loaded = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True).stderr
    return {"command": "gkd " + " ".join(args), "best_s": round(min(times), 3), "median_s": round(sorted(times)[len(times) // 2], 3),
            "loaded": json.loads(loaded.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("PYTHONDONTWRITEBYTECODE is set: starts would include compiling every module; measuring without it")
        os.environ.pop("PYTHONDONTWRITEBYTECODE")
    print(f"{'command':26} {'best s':>7} {'median s':>9}  modules loaded (of torch, timm, onnx, numpy, cv2)")
    for command in COMMANDS:
        row = measure(command, args.runs)
        print(f"{row['command']:26} {row['best_s']:7.3f} {row['median_s']:9.3f}  {', '.join(row['loaded']) or '-'}")


if __name__ == "__main__":
    main()
