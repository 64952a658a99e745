"""``python -m dit3d.bench NAME [--quick]``: run one benchmark, print one JSON line."""
from __future__ import annotations

import argparse

from dit3d.bench.registry import BENCHMARKS, run_benchmark, to_json_line


def main(argv: list[str] | None = None) -> None:
    """Run ``python -m dit3d.bench NAME [--quick]``: one benchmark, its JSON record printed as one line."""
    parser = argparse.ArgumentParser(prog="python -m dit3d.bench", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test, noisy numbers)")
    args = parser.parse_args(argv)
    print(to_json_line(run_benchmark(args.name, quick=args.quick)), flush=True)


if __name__ == "__main__":
    main()
