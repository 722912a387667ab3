"""Run folders: one job, one folder, nothing lost and nothing overwritten silently.

``DIR/config.yaml``   the resolved config, with seed, package versions and the command line
``DIR/metrics.json``  the job's numbers (rewritten atomically each time a job adds some)
``DIR/claims.json``   the paper claims the job checked: claim, our number, verdict, figure
``DIR/figures/``      PNGs, embedded in the report too
``DIR/report.html``   one self-contained file: config, metrics, tables and figures
``DIR/checkpoints/``  where training jobs keep what a resumed run picks up
``DIR/.neurosuite-run`` the marker written at creation: ``--force`` only ever deletes a
                      folder that holds it, so a folder of anything else is never removed

``--resume`` continues only the same run: a resolved config that differs from the stored
``config.yaml`` (job, level, seed, device or any parameter) is refused, naming the keys. A
checkpoint that cannot be read is named (:class:`DamagedCheckpointError`); with
``restart_damaged`` it is moved aside and that unit of work starts again.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from data_loaders._io import atomic_path, atomic_write_json, atomic_write_text
from neurosuite.config import ResolvedConfig
from neurosuite.info import versions
from neurosuite.jobs import get_job
from neurosuite.parallel import resolve_n_jobs, torch_threads
from neurosuite.report import VERDICTS, Claim, Figure, Table, write_report

logger = logging.getLogger("neurosuite")


RUN_MARKER = ".neurosuite-run"
# what a run folder made before the marker existed holds; such a folder counts as a run
_LEGACY_ENTRIES = frozenset(
    {"config.yaml", "metrics.json", "claims.json", "report.html", "figures", "checkpoints"}
)
# the keys of config.yaml that make two runs the same run (versions, command, times differ)
RESUME_KEYS = ("job", "level", "seed", "device", "params")


class RunFolderExistsError(FileExistsError):
    """The output folder holds an earlier run (or something else); it is left untouched."""


class ResumeMismatchError(ValueError):
    """``--resume`` with a resolved config that differs from the run folder's stored one."""


class DamagedCheckpointError(ValueError):
    """A checkpoint of a resumed run that cannot be read.

    Attributes
    ----------
    path : Path
        The checkpoint file or folder.
    """

    def __init__(self, path: Path, cause: BaseException):
        self.path = Path(path)
        super().__init__(
            f"checkpoint {self.path} is damaged ({type(cause).__name__}: {cause}); to start "
            "that unit again, rerun with --resume --restart-damaged (the damaged checkpoint "
            f"is kept as {self.path.name}.damaged)"
        )


def is_run_folder(path: str | Path) -> bool:
    """True for a folder made by :func:`prepare_out_dir` (its marker, or the legacy layout)."""
    path = Path(path)
    if (path / RUN_MARKER).is_file():
        return True
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    return "config.yaml" in names and names <= _LEGACY_ENTRIES


def prepare_out_dir(out_dir: str | Path, force: bool = False, resume: bool = False) -> Path:
    """Create ``out_dir`` or refuse to reuse it.

    An existing non-empty folder is never overwritten silently: ``force`` deletes it first
    and ``resume`` keeps it (and its checkpoints), both only if it is a run folder (it holds
    the :data:`RUN_MARKER` written here at creation). Any other folder is refused.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunFolderExistsError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if (force or resume) and not is_run_folder(out):
            held = sorted(p.name for p in out.iterdir())
            raise RunFolderExistsError(
                f"--out {out}: not a neurosuite run folder (no {RUN_MARKER} marker; it holds "
                f"{held[:5]}{' ...' if len(held) > 5 else ''}); --force and --resume only "
                "reuse a run folder: pick another --out"
            )
        if force:
            shutil.rmtree(out)
        elif not resume:
            raise RunFolderExistsError(
                f"--out {out}: folder exists and is not empty; pass --force to overwrite it or "
                "--resume to continue from its checkpoints"
            )
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RUN_MARKER).is_file():
        atomic_write_json(out / RUN_MARKER, {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "note": "a neurosuite run folder: `neurosuite run --force` may replace it",
        })  # fmt: skip
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    return out


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def config_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The :data:`RESUME_KEYS` (dotted, e.g. ``params.lr``) whose values differ, as text."""
    a = _flatten({k: stored.get(k) for k in RESUME_KEYS})
    b = _flatten({k: new.get(k) for k in RESUME_KEYS})
    missing = object()
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            sa = "absent" if va is missing else repr(va)
            sb = "absent" if vb is missing else repr(vb)
            diffs.append(f"{key} (stored {sa}, now {sb})")
    return diffs


def check_resume(out: Path, resolved: dict[str, Any]) -> dict[str, Any] | None:
    """Refuse to resume ``out`` with another config; return the stored config (or None)."""
    path = out / "config.yaml"
    if not path.is_file():
        return None
    try:
        stored = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ResumeMismatchError(
            f"--resume {out}: {path} is not valid YAML ({err}); cannot tell whether this is "
            "the same run: start a new one (another --out, or --force)"
        ) from err
    if not isinstance(stored, dict):
        raise ResumeMismatchError(f"--resume {out}: {path} holds no config mapping")
    diffs = config_differences(stored, resolved)
    if diffs:
        raise ResumeMismatchError(
            f"--resume {out}: the resolved config differs from the stored {path} in "
            f"{len(diffs)} key(s): {'; '.join(diffs[:8])}{' ...' if len(diffs) > 8 else ''}. "
            "Resuming would mix two runs: resume with the same config and --set values, or "
            "start a new run (another --out, or --force)"
        )
    return stored


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global generators (jobs also pass ``run.seed`` explicitly)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - global state for third-party code that uses it
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


class Run:
    """What a job sees of its run folder (duck-typed by the packages; see CONTRIBUTING.md).

    Parameters
    ----------
    out_dir : Path
        The run folder (already prepared).
    seed : int
        Seed for every generator of the job.
    level : {"full", "quick", "smoke"}
        How much work the job should do.
    device : {"auto", "cpu", "cuda"}
    verbose : bool
        Progress bars and info logging.

    ``n_jobs`` (set by :func:`execute` from the config; 1 otherwise) is the number of CPUs
    the job may use: the torch threads it runs with, or the worker processes it may give
    ``neurosuite.parallel.parallel_map``-style to independent trials or folds.
    """

    n_jobs: int = 1

    def __init__(
        self,
        out_dir: Path,
        seed: int = 0,
        level: str = "full",
        device: str = "auto",
        verbose: bool = True,
        data_dir: Path | None = None,
        restart_damaged: bool = False,
    ) -> None:
        from data_loaders.cache import data_home

        self.out_dir = Path(out_dir)
        self.figures_dir = self.out_dir / "figures"
        self.checkpoint_dir = self.out_dir / "checkpoints"
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir is not None else data_home()
        self.seed = int(seed)
        self.level = level
        self.device = device
        self.verbose = bool(verbose)
        self.restart_damaged = bool(restart_damaged)
        self.metrics: dict[str, Any] = {}
        self.figures: list[Figure] = []
        self.tables: list[Table] = []
        self.texts: list[tuple[str, str]] = []
        self.claims: list[Claim] = []

    # -- what jobs call -------------------------------------------------------------------
    def add_figure(self, fig, name: str, caption: str = "") -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` (and close it)."""
        import matplotlib.pyplot as plt

        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        path = self.figures_dir / f"{safe}.png"
        with atomic_path(path, suffix=".png") as tmp:  # fsynced, then renamed
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        self.figures = [f for f in self.figures if f.path != path]
        self.figures.append(Figure(path=path, caption=caption, name=safe))
        return path

    def add_table(self, name: str, rows: list[dict[str, Any]], caption: str = "") -> None:
        """A table (list of row dicts) shown in the report and stored in metrics.json."""
        rows = [dict(r) for r in rows]
        self.tables = [t for t in self.tables if t.name != name]
        self.tables.append(Table(name=name, rows=rows, caption=caption))
        self.metrics.setdefault("tables", {})[name] = rows
        self._flush_metrics()

    def add_metrics(self, metrics: dict[str, Any]) -> None:
        """Merge numbers into ``metrics.json`` (written atomically right away)."""
        self.metrics.update(metrics)
        self._flush_metrics()

    def add_claim(
        self, name: str, claim: str, value: str, verdict: str, figure: str | None = None
    ) -> None:
        """Declare one paper claim the job checked; it opens the report (and the demo's tour).

        Parameters
        ----------
        name : str
            Short identifier of the claim, unique within the job (a repeated name replaces
            the earlier row).
        claim : str
            The paper's claim in one line, e.g. "RS fires tonically with adaptation".
        value : str
            Our number at this level, as text, e.g. "ISI ratio 2.1 (paper: > 1)".
        verdict : {"holds", "weaker", "does not hold"}
            How our number compares with the claim.
        figure : str, optional
            The ``name`` given to :meth:`add_figure` for the figure that shows it.

        Raises
        ------
        ValueError
            If ``verdict`` is not one of the three verdicts or a text field is empty.
        """
        if verdict not in VERDICTS:
            raise ValueError(
                f"add_claim {name!r}: verdict must be one of {list(VERDICTS)}, got {verdict!r}"
            )
        for field, text in (("name", name), ("claim", claim), ("value", value)):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"add_claim: {field} must be a non-empty string, got {text!r}")
        if figure is not None:
            figure = "".join(c if c.isalnum() or c in "-_" else "_" for c in figure)
        self.claims = [c for c in self.claims if c.name != name]
        self.claims.append(
            Claim(name=name, claim=claim, value=value, verdict=verdict, figure=figure)
        )
        self._flush_claims()

    def load_checkpoint(self, path: str | os.PathLike, loader: Callable[[Path], Any]) -> Any:
        """``loader(path)``, or None when there is no checkpoint at ``path``.

        A checkpoint that exists but fails to load raises :class:`DamagedCheckpointError`
        naming it; with ``restart_damaged`` (``--restart-damaged``) it is renamed to
        ``<name>.damaged`` instead and None is returned, so the job computes that unit
        again.

        Parameters
        ----------
        path : path-like
            A checkpoint file or folder under :attr:`checkpoint_dir`.
        loader : callable
            Reads it (e.g. ``np.load`` wrapped, ``Model.from_pretrained``).
        """
        path = Path(path)
        if not path.exists():
            return None
        try:
            return loader(path)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - any failure to read it means damaged
            if not self.restart_damaged:
                raise DamagedCheckpointError(path, err) from err
            aside = path.with_name(path.name + ".damaged")
            if aside.is_dir():
                shutil.rmtree(aside)
            os.replace(path, aside)
            logger.warning("checkpoint %s is damaged (%s); moved to %s, starting that unit "
                           "again", path, err, aside.name)
            self.add_text("Restarted from a damaged checkpoint",
                          f"{path} could not be read ({type(err).__name__}: {err}); it was "
                          f"moved to {aside.name} and recomputed.")
            return None

    def add_text(self, title: str, text: str) -> None:
        """A paragraph in the report (plain text; blank lines separate paragraphs)."""
        self.texts.append((title, text))

    def progress(self, iterable: Iterable | None = None, total: int | None = None, desc=None):
        """A tqdm progress bar, off when not verbose or not a terminal."""
        from tqdm.auto import tqdm

        disable = not self.verbose or not sys.stderr.isatty()
        return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False)

    def log(self, msg: str) -> None:
        """An info message (shown when verbose)."""
        logger.info(msg)

    def _flush_metrics(self) -> None:
        atomic_write_json(self.out_dir / "metrics.json", self.metrics)

    def _flush_claims(self) -> None:
        atomic_write_json(self.out_dir / "claims.json", [c.to_dict() for c in self.claims])


def execute(
    cfg: ResolvedConfig,
    out_dir: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    verbose: bool = True,
    argv: list[str] | None = None,
    restart_damaged: bool = False,
) -> Run:
    """Run a resolved config into ``out_dir`` and write the whole run folder.

    On failure the folder still gets ``metrics.json`` with ``status: failed``, the traceback
    in the report, and the exception is re-raised. ``resume`` refuses (before writing
    anything) a config that differs from the folder's stored one
    (:class:`ResumeMismatchError`, naming the keys); ``restart_damaged`` lets a resumed job
    recompute the units whose checkpoint is damaged.
    """
    out_path = Path(out_dir)
    stored = None
    if resume and out_path.is_dir() and is_run_folder(out_path):
        stored = check_resume(out_path, cfg.to_dict())
    out = prepare_out_dir(out_dir, force=force, resume=resume)
    func, _ = get_job(cfg.job)
    run = Run(out, seed=cfg.top.seed, level=cfg.level, device=cfg.top.device, verbose=verbose,
              restart_damaged=restart_damaged)
    resolved = cfg.to_dict()
    resolved["versions"] = versions()
    resolved["command"] = " ".join(argv) if argv else None
    resolved["started"] = datetime.now(UTC).isoformat(timespec="seconds")
    if stored is not None:  # a resumed run keeps its first start and lists the resumes
        resolved["started"] = stored.get("started", resolved["started"])
        resolved["resumed"] = [*(stored.get("resumed") or []),
                               datetime.now(UTC).isoformat(timespec="seconds")]
    atomic_write_text(out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    seed_everything(cfg.top.seed)
    run.n_jobs = resolve_n_jobs(cfg.top.n_jobs)  # the run's CPUs (neurosuite.parallel)
    t0 = time.perf_counter()
    error = None
    try:
        with torch_threads(run.n_jobs):  # 1 by default: the thread policy
            returned = func(cfg.params, run)
        if returned:
            run.metrics.update(returned)
        run.metrics["status"] = "ok"
    except BaseException as err:  # noqa: BLE001 - record any failure, then re-raise
        run.metrics["status"] = "failed"
        run.metrics["error"] = f"{type(err).__name__}: {err}"
        error = err
        run.add_text("Error", traceback.format_exc())
    run.metrics["wall_time_s"] = round(time.perf_counter() - t0, 3)
    run._flush_metrics()
    run._flush_claims()  # also on a resumed run that declared none (no stale claims)
    write_report(
        out / "report.html",
        title=f"{cfg.job}" + (f" ({cfg.level})" if cfg.level != "full" else ""),
        description=cfg.top.description,
        config=resolved,
        metrics=run.metrics,
        tables=run.tables,
        figures=run.figures,
        texts=run.texts,
        claims=run.claims,
    )
    if error is not None:
        raise error
    return run
