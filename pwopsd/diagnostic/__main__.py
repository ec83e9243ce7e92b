"""``python -m pwopsd.diagnostic``: run (or resume) the branch-viability diagnostic.

Every :class:`~pwopsd.config.DiagnosticConfig` field is a flag (``--max-problems 24``,
``--pools math500 aime24``); ``--dry-run`` prints the plan and starts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from pwopsd.config import ConfigError, DiagnosticConfig
from pwopsd.diagnostic import phases
from pwopsd.diagnostic.figures import verdict


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pwopsd.diagnostic",
        description="Branch-viability diagnostic (paper Sec. 3.2, Appendix A): phases A-G.",
    )
    for f in dataclasses.fields(DiagnosticConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, str) else ""
        if kind == "list[str]":
            ap.add_argument(flag, nargs="+", default=default)
        elif kind == "int | None":
            ap.add_argument(flag, type=lambda s: None if s == "none" else int(s), default=default)
        elif kind == "int":
            ap.add_argument(flag, type=int, default=default)
        elif kind == "float":
            ap.add_argument(flag, type=float, default=default)
        else:
            ap.add_argument(flag, default=default)
    ap.add_argument("--dry-run", action="store_true", help="print the plan, start nothing")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    dry = args.pop("dry_run")
    try:
        cfg = DiagnosticConfig(**args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if dry:
        print(json.dumps(phases.plan_summary(cfg, cfg.get_profile()), indent=2))
        return 0
    result = phases.run(cfg)
    print(verdict({"rows": result["table1"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
