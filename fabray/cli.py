"""The `fabray` command line (DESIGN §8). Exit codes: 0 ok, 2 bad input, 1 failure.

Each sub-command is a small function that parses nothing itself: argparse does that here, and
the work is done by library functions imported lazily (so `fabray validate` never loads
TensorFlow or Ray).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fabray.errors import BadInputError

logger = logging.getLogger("fabray")


# ---------------------------------------------------------------------------- sub-commands


def _cmd_simulate(args: argparse.Namespace) -> int:
    raise NotImplementedError("simulate")  # filled in by the simulator work


def _cmd_validate(args: argparse.Namespace) -> int:
    raise NotImplementedError("validate")  # filled in by the validator work


def _cmd_models(args: argparse.Namespace) -> int:
    raise NotImplementedError("models")  # filled in by the models work


def _cmd_demo(args: argparse.Namespace) -> int:
    raise NotImplementedError("demo")


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fabray",
        description="Forecast OHT transport delays in a semiconductor fab: simulate or validate "
        "zone-minute data, train a model zoo on Ray, fit a dynamic ensemble, evaluate and serve.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=help_text, description=help_text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        p.set_defaults(handler=handler)
        return p

    p = add("simulate", _cmd_simulate, "Simulate a fab's OHT traffic, one row per zone-minute.")
    p.add_argument("--preset", default="tiny", choices=["tiny", "poc", "1m", "1.5m"],
                   help="size: tiny (tests, seconds), poc (781,163 rows), 1m, 1.5m")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data")
    p.add_argument("--zones", type=int, default=None, help="number of zones (default: the preset's)")
    p.add_argument("--config", default=None, help="YAML config with a 'simulation' section")
    p.add_argument("--out", required=True, help="output file (.parquet or .csv)")
    p.add_argument("--plot", default=None, help="also draw one zone's day to this PNG")

    p = add("validate", _cmd_validate, "Check a data file against the data contract; exit 2 on errors.")
    p.add_argument("path", help="Parquet or CSV file, one row per zone-minute")
    p.add_argument("--max-errors", type=int, default=50, help="errors to print per kind")

    p = add("models", _cmd_models, "Table of the models: parameters, the seed's claim, latency.")
    p.add_argument("--config", default=None, help="YAML config with model sizes")

    p = add("demo", _cmd_demo, "Run the whole chain on a small simulated fab.")
    p.add_argument("--workdir", default="demo-run", help="where the demo writes its files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except BadInputError as err:
        print(f"fabray {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fabray {args.command}: interrupted", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
        logger.exception("fabray %s failed", args.command)
        print(f"fabray {args.command}: failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
