"""Argument helpers shared by the ``dit3d`` subcommands."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_notes(notes: list[str]) -> dict[str, str]:
    """``--note KEY=VALUE`` arguments as a dict; exits with a message on a malformed one."""
    bad = [n for n in notes if "=" not in n]
    if bad:
        raise SystemExit(f"--note takes KEY=VALUE, got {bad}")
    return dict(n.split("=", 1) for n in notes)


def ddpm_export_steps(sampler: str, steps: int | None) -> int | None:
    """Default steps stored by ``dit3d export``: ``None`` (all T) for DDPM, ``steps or 50`` for DDIM."""
    if sampler == "ddpm" and steps is not None:
        raise SystemExit("--steps applies to --sampler ddim only; DDPM runs all T steps")
    return None if sampler == "ddpm" else (steps or 50)
