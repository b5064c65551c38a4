"""``ctloop``: set up the embedded default, make example data, and run the demo loop."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ctloop.devtools.embedded_env import apply_embedded_defaults
from ctloop.devtools.example_data import FAULTS
from ctloop.replay.schedule import DEFAULT_START, MIN_INTERVAL


def _count(text: str) -> int:
    """A whole number, 0 or more, for argparse."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not 0 or more")
    return value


def _interval(text: str) -> timedelta:
    """Minutes between replayed batches, for argparse."""
    interval = timedelta(minutes=float(text))
    if interval < MIN_INTERVAL:
        raise argparse.ArgumentTypeError(f"{text} minutes is less than {MIN_INTERVAL}")
    return interval


def _moment(text: str) -> datetime:
    """An ISO 8601 time, UTC unless it says otherwise, for argparse."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _home() -> Path:
    return Path(os.environ.get("CTLOOP_HOME", ".ctloop")).expanduser().resolve()


def cmd_env(args: argparse.Namespace) -> int:
    """Print ``export`` lines, for ``eval "$(ctloop env)"`` before ``airflow standalone``."""
    for key, value in apply_embedded_defaults(_home()).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Migrate Airflow's metadata database, create MLflow's tables and ctloop's (the ledger, the
    alerts), before any component starts."""
    from ctloop.monitoring.alerts import create_table
    from ctloop.registry.ledger import create_tables
    from ctloop.registry.mlflow_store import init_tracking_store
    from ctloop.settings import load_settings

    apply_embedded_defaults(_home())
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    settings = load_settings()
    init_tracking_store(settings)
    create_tables(settings)
    create_table(settings)
    return 0


def cmd_datagen(args: argparse.Namespace) -> int:
    """Write example batches (churn: optionally shifted or broken) for a pipeline to read."""
    from ctloop.devtools.example_data import write_batches

    options: dict[str, Any] = {"concept_drift": args.concept_drift}
    if args.dataset == "churn":
        options["shift"] = {name: float(sds) for name, _, sds in (item.partition("=") for item in args.shift)}
        options["fault"] = args.fault
    elif args.shift or args.fault:
        print(
            f"datagen: --shift and --fault apply to the churn dataset only, not {args.dataset}",
            file=sys.stderr,
        )
        return 2
    paths = write_batches(
        args.out,
        range(args.first_batch, args.first_batch + args.batches),
        rows=args.rows,
        seed=args.seed,
        fmt=args.format,
        dataset=args.dataset,
        **options,
    )
    print("\n".join(map(str, paths)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole loop on the example pipeline through a local Airflow and print a timeline."""
    from ctloop.devtools.demo import run_demo

    apply_embedded_defaults(_home())
    return run_demo(_home(), rows_per_batch=args.rows)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Move a pipeline's champion back to the previous or a named version, as its __rollback DAG does."""
    import getpass

    from ctloop.errors import RollbackRefused
    from ctloop.registry.rollback import rollback
    from ctloop.settings import load_settings

    apply_embedded_defaults(_home())
    try:
        outcome = rollback(
            load_settings(),
            args.pipeline,
            target=args.to,
            reason=args.reason,
            force=args.force,
            user=f"cli:{getpass.getuser()}",
        )
    except RollbackRefused as exc:
        print(f"rollback refused: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.pipeline}: champion v{outcome.from_version} -> v{outcome.to}"
        f" ({outcome.action}, ledger #{outcome.seq})"
    )
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    """Print a pipeline's promotion ledger: every move of its champion alias, oldest first, with
    moves under way or abandoned (a process died before moving the alias) marked as such."""
    import json

    from ctloop.registry.ledger import entries
    from ctloop.settings import load_settings

    apply_embedded_defaults(_home())
    rows = entries(load_settings(), args.pipeline, every_state=True)
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
        return 0
    for row in rows:
        by = row.user or row.run_key or "-"
        state = "" if row.state == "done" else f" [{row.state}]"
        print(
            f"#{row.seq}{state} {row.at} {row.action}: v{row.from_version or '-'} -> v{row.to_version}"
            f" by {by}{f' approved by {row.approver}' if row.approver else ''}: {row.reason}"
        )
    if not rows:
        print(f"{args.pipeline}: no champion moves recorded")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Run a pipeline over a folder of production batches and their late labels, in a home of its
    own, on a simulated clock; print the timeline and write the records as JSON."""
    import tempfile

    from ctloop.errors import CtloopError
    from ctloop.replay.loop import ReplayOptions, run_replay
    from ctloop.replay.records import timeline
    from ctloop.settings import load_settings
    from ctloop.spec.loading import load_spec
    from ctloop.timeline import Row, format_timeline

    out = args.out.expanduser().resolve()
    home = args.home
    try:
        settings = load_settings()
        path = Path(args.pipeline)
        spec = load_spec(
            path if path.suffix in (".yaml", ".yml") else settings.pipelines_dir / f"{path}.yaml"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        home = home or Path(tempfile.mkdtemp(prefix=f"{out.stem}-home-", dir=out.parent))
        options = ReplayOptions(
            batches=args.batches,
            labels=args.labels,
            label_delay=args.label_delay,
            home=home,
            start=args.start,
            interval=args.interval_minutes,
            overrides=tuple(args.set),
        )
        result = run_replay(spec, settings, options, progress=lambda line: print(line, flush=True))
    except CtloopError as exc:
        if args.home is None and home is not None:
            with contextlib.suppress(OSError):  # a home the replay never wrote to
                home.rmdir()
        print(f"replay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    out.write_text(result.model_dump_json(indent=2) + "\n")
    rows = [Row(**row.model_dump()) for row in timeline(result)]
    print("\n" + format_timeline(rows, spec.monitoring.quality.metric) + "\n")
    print(
        f"Records: {out}\nReplay home: {result.home} (its own MLflow store: mlflow ui --backend-store-uri"
        f" sqlite:///{result.home}/mlflow.db)"
    )
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    """``airflow scheduler`` with the task libraries preloaded, so LocalExecutor tasks start warm."""
    from ctloop.devtools.preload import preload_task_libraries

    preload_task_libraries()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "scheduler", *args.airflow_args]
    airflow_main()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ctloop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("env", help=cmd_env.__doc__).set_defaults(func=cmd_env)
    commands.add_parser("init", help=cmd_init.__doc__).set_defaults(func=cmd_init)
    datagen = commands.add_parser("datagen", help=cmd_datagen.__doc__)
    datagen.add_argument("--out", required=True, help="folder to write batch files into")
    datagen.add_argument(
        "--dataset",
        choices=["churn", "delivery", "tickets"],
        default="churn",
        help="which example pipeline's data",
    )
    datagen.add_argument("--batches", type=int, default=1)
    datagen.add_argument("--first-batch", type=int, default=0)
    datagen.add_argument("--rows", type=int, default=5000)
    datagen.add_argument("--seed", type=int, default=7)
    datagen.add_argument("--format", choices=["csv", "parquet"], default="csv")
    datagen.add_argument("--shift", action="append", default=[], metavar="FEATURE=SDS")
    datagen.add_argument("--concept-drift", action="store_true")
    datagen.add_argument(
        "--fault",
        choices=FAULTS,
    )
    datagen.set_defaults(func=cmd_datagen)
    demo = commands.add_parser("demo", help=cmd_demo.__doc__)
    demo.add_argument("--rows", type=int, default=5000, help="rows per example batch")
    demo.set_defaults(func=cmd_demo)
    rollback = commands.add_parser("rollback", help=cmd_rollback.__doc__)
    rollback.add_argument("pipeline")
    rollback.add_argument("--to", default="previous", help="'previous' (default) or a version number")
    rollback.add_argument("--reason", required=True, help="recorded in the ledger")
    rollback.add_argument("--force", action="store_true", help="allow a target that never passed its gates")
    rollback.set_defaults(func=cmd_rollback)
    ledger = commands.add_parser("ledger", help=cmd_ledger.__doc__)
    ledger.add_argument("pipeline")
    ledger.add_argument("--json", action="store_true")
    ledger.set_defaults(func=cmd_ledger)
    replay = commands.add_parser("replay", help=cmd_replay.__doc__)
    replay.add_argument("pipeline", help="a pipeline name (its YAML in CTLOOP_PIPELINES_DIR) or a YAML file")
    replay.add_argument("--batches", type=Path, required=True, help="production batch files, in name order")
    replay.add_argument("--labels", type=Path, required=True, help="label files, named as their batches")
    replay.add_argument(
        "--label-delay", type=_count, default=1, metavar="N", help="batch i's labels arrive with batch i+N"
    )
    replay.add_argument("--out", type=Path, required=True, help="the JSON file of the replay's records")
    replay.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec setting for a what-if, e.g. retrain.k_of_n.k=1 (repeatable)",
    )
    replay.add_argument(
        "--interval-minutes",
        type=_interval,
        help="simulated time between batches (default: the spec's score cron interval, or 60)",
    )
    replay.add_argument(
        "--start",
        type=_moment,
        default=DEFAULT_START,
        help="the simulated time of the first training (ISO 8601)",
    )
    replay.add_argument(
        "--home", type=Path, help="the replay's own CTLOOP_HOME (default: a new folder beside --out)"
    )
    replay.set_defaults(func=cmd_replay)
    scheduler = commands.add_parser("scheduler", help=cmd_scheduler.__doc__)
    scheduler.add_argument("airflow_args", nargs=argparse.REMAINDER, help="passed to airflow scheduler")
    scheduler.set_defaults(func=cmd_scheduler)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
