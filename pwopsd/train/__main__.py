"""``python -m pwopsd.train``: one training run (see :mod:`pwopsd.train`).

Every user error (unknown family, profile or method, a ``--set`` value that is not its field's
type or out of range, an unwritable root) is one ``error:`` line naming the culprit and the
accepted values, exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from pwopsd.config import ConfigError, check_writable_dir
from pwopsd.train.loop import train
from pwopsd.train.spec import RunSpec, plan
from pwopsd.train.step import TrainingError
from pwopsd.vocab import BACKENDS, FAMILIES, MAIN_FAMILY, SCHEDULES, TRAINABLE_METHODS


def parse_schedule(text: str | None) -> str | tuple[float, ...] | None:
    """A schedule name, or "w_min,c,s" as three floats (checked later by RunSpec)."""
    if text is None or text in SCHEDULES:
        return text
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(
            f"--schedule {text!r}: a name {list(SCHEDULES)} or 'w_min,c,s' (e.g. 0.25,0.3,0.1)"
        )
    return values


def parse_overrides(args: argparse.Namespace) -> tuple[tuple[str, Any], ...]:
    """``--set FIELD=VALUE`` pairs (values read as YAML, then typed by RunSpec) and the named
    flags, which are the same settings under another spelling."""
    overrides: list[tuple[str, Any]] = []
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like FIELD=VALUE")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({err})") from None
        overrides.append((key.strip(), parsed))
    for name, value in (
        ("max_steps", args.max_steps),
        ("micro_batch", args.micro_batch),
        ("learning_rate", args.learning_rate),
        ("rollout_backend", args.backend),
    ):
        if value is not None:
            overrides.append((name, value))
    return tuple(overrides)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pwopsd.train", description="One OPSD run.")
    ap.add_argument("--method", required=True, help=f"one of {', '.join(TRAINABLE_METHODS)}")
    ap.add_argument("--schedule", default=None, help="name or w_min,c,s (position methods)")
    ap.add_argument("--seed", type=int, default=1, help="replicate seed (training seed 1, 2, 3)")
    ap.add_argument("--family", default=MAIN_FAMILY, help=f"one of {', '.join(FAMILIES)}")
    ap.add_argument("--profile", default="toy")
    ap.add_argument("--root", default="", help="runs root (default results/<profile>/runs)")
    ap.add_argument("--max-steps", default=None, help="= --set max_steps=N")
    ap.add_argument("--micro-batch", default=None, help="= --set micro_batch=N")
    ap.add_argument("--learning-rate", default=None, help="= --set learning_rate=X")
    ap.add_argument("--backend", default=None, help=f"rollout backend: {' or '.join(BACKENDS)}")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any TrainConfig field, value as YAML (e.g. --set tau_clip=null --set save_every=5)",
    )
    ap.add_argument(
        "--processes", type=int, default=None, help="with --dry-run: plan for this many processes"
    )
    ap.add_argument("--dry-run", action="store_true", help="validate and print the plan")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = RunSpec(
            method=args.method,
            seed=args.seed,
            family=args.family,
            schedule=parse_schedule(args.schedule),
            profile=args.profile,
            overrides=parse_overrides(args),
            root=args.root,
        )
        the_plan = plan(spec, world_size=args.processes)
        if not args.dry_run:
            check_writable_dir(
                "--root", Path(spec.run_dir()), shown=args.root or str(spec.run_dir())
            )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(the_plan, indent=2))
        return 0
    try:
        result = train(spec)
    except (ConfigError, TrainingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    print(f"{'reused' if result.reused else 'trained'} {result.run_dir}")
    print(f"evaluated adapter: {result.eval_adapter}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
