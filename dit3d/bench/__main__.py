"""``python -m dit3d.bench NAME [--quick]``: run one benchmark, print one JSON line."""
from __future__ import annotations

import argparse

from dit3d.allocator import retain_freed_memory
from dit3d.bench.registry import BENCHMARKS, benchmark_parameters, run_benchmark, to_json_line
from dit3d.cli.common import positive_int
from dit3d.nn.blocks import MLP_ACTIVATIONS
from dit3d.pretrained import PretrainedError


#: keyword argument of a benchmark -> the option that sets it
OPTIONS = {"checkpoints": "--checkpoint", "seeds": "--seeds", "num_samples": "--num-samples", "mlp_act": "--mlp-act"}


def main(argv: list[str] | None = None) -> None:
    """Run ``python -m dit3d.bench NAME [--quick]``: one benchmark, its JSON record printed as one line."""
    parser = argparse.ArgumentParser(prog="python -m dit3d.bench", description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test, noisy numbers)")
    parser.add_argument("--checkpoint", action="append", dest="checkpoints", metavar="PATH_OR_NAME",
                        help="the model to score instead of the shipped one (adit-qm9, adit-crystals); repeat "
                             "to compare several (adit-crystals-compare)")
    parser.add_argument("--seeds", type=int, nargs="+", help="sampling seeds (adit-crystals-compare)")
    parser.add_argument("--num-samples", type=positive_int, help="samples per model and seed (adit-crystals-compare)")
    parser.add_argument("--mlp-act", choices=sorted(MLP_ACTIVATIONS),
                        help="the trunk's MLP activation (dit3d; default: DiT's gelu_tanh)")
    args = parser.parse_args(argv)
    retain_freed_memory()  # as the dit3d command does; `malloc` compares it with glibc's default
    extra = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    if "checkpoints" in extra and "checkpoint" in benchmark_parameters(args.name):  # scores one model
        if len(extra["checkpoints"]) != 1:
            parser.error(f"benchmark {args.name} scores one model: give --checkpoint once")
        extra["checkpoint"] = extra.pop("checkpoints")[0]
    refused = sorted(set(extra) - benchmark_parameters(args.name))
    if refused:
        parser.error(f"benchmark {args.name} takes no {', '.join(OPTIONS[k] for k in refused)}")
    try:
        result = run_benchmark(args.name, quick=args.quick, **extra)
    except (PretrainedError, FileNotFoundError) as e:  # a model or data folder that is not there
        raise SystemExit(f"python -m dit3d.bench {args.name}: error: {e}") from None
    print(to_json_line(result), flush=True)


if __name__ == "__main__":
    main()
