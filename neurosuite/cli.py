"""The ``neurosuite`` command: run a config, run the demo, list configs, print system info."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path

from neurosuite.config import ConfigError, load_yaml, resolve
from neurosuite.parallel import N_JOBS_HELP, set_wait_policy
from neurosuite.report import Figure, Section, load_claims, write_sections
from neurosuite.runs import DamagedCheckpointError, execute, prepare_out_dir

logger = logging.getLogger("neurosuite")


def configs_dir() -> Path:
    """The shipped ``configs/`` folder (next to the packages in a source checkout)."""
    return Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> list[Path]:
    return sorted(configs_dir().rglob("*.yaml"))


def demo_configs() -> list[tuple[int, Path]]:
    """The configs with a ``demo_stage``, in stage order."""
    stages = []
    for path in shipped_configs():
        stage = load_yaml(path).get("demo_stage")
        if stage is not None:
            stages.append((int(stage), path))
    return sorted(stages)


def _default_out(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _interactive(args: argparse.Namespace) -> bool:
    """Progress bars only for a person at a terminal (not --quiet, not a log file)."""
    return not args.quiet and sys.stderr.isatty()


def _n_jobs_sets(args: argparse.Namespace) -> list[str]:
    """``--n-jobs N`` is the override ``n_jobs=N`` (validated and recorded with the config)."""
    n = getattr(args, "n_jobs", None)
    return [] if n is None else [f"n_jobs={n}"]


def cmd_run(args: argparse.Namespace) -> int:
    level = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = resolve(args.config, level=level, sets=args.set + _n_jobs_sets(args))
    out = Path(args.out) if args.out else _default_out(Path(args.config).stem)
    restart = args.restart_damaged
    try:
        execute(cfg, out, force=args.force, resume=args.resume, verbose=_interactive(args),
                argv=sys.argv, restart_damaged=restart)
    except DamagedCheckpointError as err:
        # the offer: at a terminal, ask; elsewhere the message says which flag does it
        if restart or not (args.resume and sys.stdin.isatty()):
            raise
        print(f"neurosuite: {err}", file=sys.stderr)
        answer = input(f"start that unit again (keeps {err.path.name}.damaged)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise
        execute(cfg, out, resume=True, verbose=_interactive(args), argv=sys.argv,
                restart_damaged=True)
    print(out / "report.html")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    level = "smoke" if args.quick else "quick"
    out = prepare_out_dir(args.out or _default_out("demo"), force=args.force)
    stages = demo_configs()
    if not stages:
        print("no config has a demo_stage", file=sys.stderr)
        return 1
    sections, failed = [], []
    t_start = time.perf_counter()
    for i, (stage, path) in enumerate(stages, 1):
        name = f"{stage:02d}-{path.stem}"
        print(f"[{i}/{len(stages)}] {path.relative_to(configs_dir().parent)} ...", flush=True)
        t0 = time.perf_counter()
        try:
            cfg = resolve(path, level=level, sets=_n_jobs_sets(args))
            run = execute(cfg, out / name, verbose=_interactive(args), argv=sys.argv)
            metrics, figs, tables, texts = run.metrics, run.figures, run.tables, run.texts
            claims = run.claims
        except Exception as err:  # noqa: BLE001 - one failed stage must not hide the others
            failed.append(name)
            metrics = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            figs, tables, texts = _figures_in(out / name), [], []
            claims = load_claims(out / name)
            print(f"    FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        print(f"    {metrics.get('status')} in {time.perf_counter() - t0:.1f} s", flush=True)
        desc = load_yaml(path).get("description", "")
        sections.append(Section(title=f"{i}. {path.stem}", description=desc, metrics=metrics,
                                tables=tables, figures=figs, texts=texts,
                                link=f"{name}/report.html", claims=claims))
    total = time.perf_counter() - t_start
    report = write_sections(
        out / "report.html", "neurosuite demo", sections,
        intro=f"{len(stages)} stages at level '{level}' in {total:.0f} s; each stage's own run "
              "folder holds its config, metrics.json, figures and report.")
    print(f"demo report: {report.resolve()}")
    return 1 if failed else 0


def _figures_in(folder: Path) -> list[Figure]:
    return [Figure(path=p, name=p.stem) for p in sorted((folder / "figures").glob("*.png"))]


def cmd_list(args: argparse.Namespace) -> int:
    root = configs_dir().parent
    for path in shipped_configs():
        raw = load_yaml(path)
        stage = raw.get("demo_stage")
        demo = f"[demo {stage}]" if stage is not None else ""
        print(f"{str(path.relative_to(root)):<42} {raw.get('job', '?'):<22} {demo:<10} "
              f"{raw.get('description', '')}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from neurosuite.info import sys_info

    sys_info()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neurosuite", description=__doc__)
    p.add_argument("--verbose", "-v", action="store_true", help="log info messages")
    p.add_argument("--traceback", action="store_true",
                   help="on an error, print the full Python traceback too")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one config into a run folder")
    r.add_argument("config", help="a YAML config (see `neurosuite list`)")
    r.add_argument("--out", help="run folder (default: runs/<config>-<time>)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set params.n=100 --set seed=1")
    r.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    r.add_argument("--resume", action="store_true",
                   help="reuse an existing run folder and continue from its checkpoints "
                        "(the resolved config must equal the stored one)")
    r.add_argument("--restart-damaged", action="store_true",
                   help="with --resume: move a checkpoint that cannot be read aside "
                        "(<name>.damaged) and compute that unit again")
    lv = r.add_mutually_exclusive_group()
    lv.add_argument("--quick", action="store_true", help="apply the config's quick overrides")
    lv.add_argument("--smoke", action="store_true", help="apply the tiny smoke overrides")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--n-jobs", type=int, default=None, metavar="N",
                   help=N_JOBS_HELP)
    r.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, print the full Python traceback too")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="run the tour of the suite on the embedded default data")
    d.add_argument("--out", help="folder (default: runs/demo-<time>)")
    d.add_argument("--quick", action="store_true", help="tiny version of every stage (seconds)")
    d.add_argument("--force", action="store_true", help="overwrite an existing folder")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.add_argument("--n-jobs", type=int, default=None, metavar="N", help=N_JOBS_HELP)
    d.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, print the full Python traceback too")
    d.set_defaults(func=cmd_demo)

    from neurosuite.sweep import add_sweep_parser

    add_sweep_parser(sub)

    sub.add_parser("list", help="the shipped configs, one line each").set_defaults(func=cmd_list)
    sub.add_parser("info", help="versions, devices, threads").set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    set_wait_policy()  # OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP (neurosuite.parallel)
    import matplotlib

    matplotlib.use("Agg")  # jobs draw into files; never open a window
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("neurosuite: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every error gets one named line, exit 2
        if getattr(args, "traceback", False):
            traceback.print_exc()
        print(f"neurosuite: error: {_describe_error(err)}", file=sys.stderr)
        if not getattr(args, "traceback", False) and not isinstance(err, ConfigError):
            print("neurosuite: (run with --traceback for the full traceback)", file=sys.stderr)
        return 2


def _describe_error(err: BaseException) -> str:
    """One line for the user: the message, with the type where it adds something."""
    text = str(err) or type(err).__name__
    if isinstance(err, ConfigError | ValueError | FileNotFoundError | FileExistsError):
        return text
    return f"{type(err).__name__}: {text}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
