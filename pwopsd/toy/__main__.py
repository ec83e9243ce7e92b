"""``python -m pwopsd.toy <command> [flags]``: the toy world's command line.

* ``data [--out DIR]``: write the toy data sets (:mod:`pwopsd.toy.build_data`);
* ``pretrain --family {qwen3,llama,olmo3,all} [--steps N] [--lr LR] [--<mixture-field> X] ...``:
  pretrain the toy checkpoints (:mod:`pwopsd.toy.pretrain`; every ``Mixture`` field is a flag);
* ``calibrate [--families ...] [--set toy_aime24] [--logprobs-only]``: score the checkpoints
  under each prompt template (:mod:`pwopsd.toy.calibrate`);
* ``teacher-signal [--families ...] [--set toy_val]``: where the teacher's per-token signal
  sits (:mod:`pwopsd.toy.teacher_signal`);
* ``recipe [--candidates NAME ...] [--seeds S ...]``: tune the toy training recipe on the
  validation set (:mod:`pwopsd.toy.recipe`).

Each command parses and checks its flags, then calls its module's library function;
``python -m pwopsd.toy <command> --help`` lists the flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pwopsd.config import CHECKPOINTS_DIR, TOY_DATA_DIR
from pwopsd.toy import build_data, calibrate, pretrain, recipe, teacher_signal
from pwopsd.vocab import FAMILIES, TOY_BENCHMARKS

Handler = Callable[[argparse.Namespace, argparse.ArgumentParser], int]


# ------------------------------------------------------------------ data


def _add_data(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--out", type=Path, default=TOY_DATA_DIR, help="output directory")
    return _run_data


def _run_data(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    for name, n in build_data.build(args.out).items():
        print(f"{args.out / (name + '.jsonl')}: {n} rows")
    return 0


# ------------------------------------------------------------------ pretrain


def _add_pretrain(parser: argparse.ArgumentParser) -> Handler:
    cfg = pretrain.PretrainConfig
    parser.add_argument("--family", choices=[*FAMILIES, "all"], default="all")
    parser.add_argument(
        "--minutes", type=float, default=cfg.minutes, help="wall-clock cap per family"
    )
    parser.add_argument("--steps", type=int, default=cfg.steps, help="step cap per family")
    parser.add_argument(
        "--out", type=Path, default=CHECKPOINTS_DIR, help="parent dir of toy-<family>/"
    )
    parser.add_argument("--seed", type=int, default=cfg.seed)
    parser.add_argument(
        "--lr", type=float, default=None, help="peak AdamW learning rate (default: the family's)"
    )
    for name in pretrain.Mixture.__dataclass_fields__:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=None,
            help=f"Mixture.{name} (default: the family's; see pwopsd.toy.examples.Mixture)",
        )
    return _run_pretrain


def _run_pretrain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.minutes <= 0 or args.steps <= 0 or (args.lr is not None and args.lr <= 0):
        parser.error("--minutes, --steps and --lr must be > 0")
    families = FAMILIES if args.family == "all" else (args.family,)
    overrides = {name: getattr(args, name) for name in pretrain.Mixture.__dataclass_fields__}
    # Every family's config is built (and checked) before any training starts.
    configs = [
        pretrain.family_config(
            family, steps=args.steps, minutes=args.minutes, seed=args.seed, lr=args.lr, **overrides
        )
        for family in families
    ]
    tok = pretrain.build_tokenizer()
    for cfg in configs:
        out = args.out / f"toy-{cfg.family}"
        log = pretrain.pretrain(cfg, out, tok)
        print(
            f"{cfg.family}: {log['n_params']:,} params, {log['steps_done']} steps in "
            f"{log['wall_seconds']:.0f} s, loss {log['first_loss']:.4f} -> final "
            f"{log['final_loss']:.4f}; wrote {out}"
        )
    return 0


# ------------------------------------------------------------------ calibrate


def _add_calibrate(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--set", choices=TOY_BENCHMARKS, default=calibrate.DEFAULT_SET)
    parser.add_argument(
        "--n", type=int, default=None, help="samples per problem (default: profile's 12)"
    )
    parser.add_argument("--max-problems", type=int, default=None)
    parser.add_argument("--out", type=Path, default=calibrate.CALIBRATION_PATH)
    parser.add_argument(
        "--logprobs-only",
        action="store_true",
        help="only the vLLM-vs-HF logprob check; prints JSON",
    )
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="parent dir of toy-<family>/ (default: checkpoints/)",
    )
    # One family in this process: what calibrate.calibrate starts in each child.
    parser.add_argument("--worker", choices=FAMILIES, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    return _run_calibrate


def _run_calibrate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.worker:
        entry = calibrate.run_family(
            args.worker, args.set, args.n, args.max_problems, args.logprobs_only, args.checkpoints
        )
        args.worker_out.write_text(json.dumps(entry))
        return 0
    results = calibrate.calibrate(
        args.families, args.set, args.n, args.max_problems, args.logprobs_only, args.checkpoints
    )
    if args.logprobs_only:
        print(json.dumps({f: e["logprob_max_abs_diff"] for f, e in results.items()}))
        return 0
    calibrate.print_table(results)
    reduced = args.max_problems or args.n or args.set != calibrate.DEFAULT_SET
    if reduced and args.out == calibrate.CALIBRATION_PATH:
        # A reduced run never overwrites the shipped calibration unless --out says where.
        print(f"reduced run: not writing {calibrate.CALIBRATION_PATH} (pass --out to keep it)")
        return 0
    calibrate.write_calibration(results, args.out)
    print(f"wrote {args.out}")
    return 0


# ------------------------------------------------------------------ teacher-signal


def _add_teacher_signal(parser: argparse.ArgumentParser) -> Handler:
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument(
        "--set", default=teacher_signal.SIGNAL_SET, help="held-out set (default: toy_val)"
    )
    parser.add_argument("--per-problem", type=int, default=teacher_signal.ROLLOUTS_PER_PROBLEM)
    parser.add_argument("--max-problems", type=int, default=None)
    parser.add_argument(
        "--checkpoints", type=Path, default=None, help="parent dir of toy-<family>/"
    )
    parser.add_argument("--out", type=Path, default=calibrate.CALIBRATION_PATH)
    parser.add_argument("--no-write", action="store_true", help="print only")
    return _run_teacher_signal


def _run_teacher_signal(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    paths = calibrate.checkpoint_paths(args.families, args.checkpoints)
    results = {}
    for family in args.families:
        results[family] = teacher_signal.measure(
            paths[family], args.set, args.per_problem, args.max_problems
        )
        print(teacher_signal.summary_line(family, results[family]), flush=True)
    reduced = (
        args.max_problems
        or args.set != teacher_signal.SIGNAL_SET
        or args.per_problem != teacher_signal.ROLLOUTS_PER_PROBLEM
    )
    if args.no_write:
        return 0
    if reduced and args.out == calibrate.CALIBRATION_PATH:
        print(f"reduced run: not writing {calibrate.CALIBRATION_PATH} (pass --out to keep it)")
        return 0
    teacher_signal.write_signal(results, args.out)
    print(f"wrote teacher_signal into {args.out}")
    return 0


# ------------------------------------------------------------------ recipe


def _add_recipe(parser: argparse.ArgumentParser) -> Handler:
    names = list(recipe.CANDIDATES)
    parser.add_argument("--candidates", nargs="+", default=names, choices=names)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["opsd"],
        help="methods as run names: opsd, eopd, ..., pw_opsd_<schedule> (e.g. pw_opsd_aggressive)",
    )
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--root", default=str(recipe.RUNS_ROOT))
    parser.add_argument("--out", default=str(recipe.TUNING_PATH))
    return _run_recipe


def _run_recipe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not recipe.val_set_present():
        print(f"error: the validation set {recipe.VAL_SET.source} is missing", file=sys.stderr)
        return 2
    for method in args.methods:
        try:
            recipe.method_spec(method)
        except ValueError as err:
            parser.error(f"--methods: {err}")
    recipe.tune(args.candidates, args.seeds, args.methods, args.n, args.root, args.out)
    print(f"wrote {args.out}")
    return 0


# ------------------------------------------------------------------ dispatch

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], Handler], str]] = {
    "data": (_add_data, build_data.__doc__.splitlines()[0]),
    "pretrain": (_add_pretrain, "Pretrain the toy checkpoints."),
    "calibrate": (_add_calibrate, "Calibrate the toy checkpoints."),
    "teacher-signal": (_add_teacher_signal, teacher_signal.__doc__.splitlines()[0]),
    "recipe": (_add_recipe, recipe.__doc__),
}
"""Command -> (the function that adds its flags and returns its handler, its description)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m pwopsd.toy`` parser, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m pwopsd.toy", description="The toy world's commands."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add, description) in COMMANDS.items():
        sub = commands.add_parser(name, help=description.splitlines()[0], description=description)
        sub.set_defaults(handler=add(sub), parser=sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one toy-world command; returns its exit status."""
    args = build_parser().parse_args(argv)
    return args.handler(args, args.parser)


if __name__ == "__main__":
    sys.exit(main())
