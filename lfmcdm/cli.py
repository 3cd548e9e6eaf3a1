"""The ``lfmcdm`` command line: run a stage, or list them."""

from __future__ import annotations

import enum
from pathlib import Path

import typer
from rich.console import Console

from lfmcdm.stages import STAGES

COHORT_METRICS = "synthesis.json"  # `lfmcdm synthesize --cohort <other>`: its metrics, beside its videos

StageName = enum.Enum("StageName", {name: name for name in STAGES}, type=str)

_STAGE_LIST = "\n".join(f"  {name:<16} {info.help}" for name, info in STAGES.items())
app = typer.Typer(
    help=f"Label-free motion-conditioned diffusion for cardiac ultrasound.\n\nStages, in pipeline order:\n\n\b\n{_STAGE_LIST}",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
err = Console(stderr=True)
PROGRESS_HELP = ("Progress on stderr (default: bars on a terminal, a status line a minute when stderr is a file, "
                 "nothing when CI is set).")
LOG_PROGRESS_INTERVAL_S = 60  # stderr redirected to a log (`nohup dvc repro > log`): one refresh a minute


def _progress(flag: bool | None) -> bool:
    """Progress when asked, else whenever someone may watch: ``dvc repro`` in a terminal draws bars, a
    redirected long run logs a line a minute (tqdm reads ``TQDM_MININTERVAL``), CI (``CI`` set) stays quiet."""
    import os
    import sys

    if flag is not None:
        return flag
    if os.environ.get("CI"):
        return False
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", str(LOG_PROGRESS_INTERVAL_S))
    return True



def _user_errors() -> tuple[type[Exception], ...]:
    """Errors caused by input or configuration: shown as one clear message, no traceback."""
    from lfmcdm.config import ConfigError
    from lfmcdm.data.echonet import EchoNetFormatError
    from lfmcdm.data.validation import ValidationFailed
    from lfmcdm.models.pipeline import ModelMismatchError
    from lfmcdm.preflight import PreflightError
    from lfmcdm.stages.ingest import NothingKept
    from lfmcdm.stages.phantom import PhantomRefused
    from lfmcdm.synth.plan import PlanError

    return (ConfigError, EchoNetFormatError, ValidationFailed, FileNotFoundError, LookupError, PlanError,
            PreflightError, NothingKept, PhantomRefused, ModelMismatchError)


def _fail(exc: Exception) -> None:
    """Print a user error as one line (no traceback) and exit with status 2."""
    from rich.markup import escape

    # soft_wrap: one line however long; escape: a hostile file name may contain "[bold]"-like text
    err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


@app.command("stage")
def stage(
    name: StageName = typer.Argument(..., help="Stage to run."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    root: Path = typer.Option(Path("."), help="Repository root that data/, models/, metrics/ live under."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help=PROGRESS_HELP, show_default=False),
) -> None:
    """Run one pipeline stage with the settings in params.yaml."""
    from lfmcdm.config import load_params
    from lfmcdm.stages import run_stage

    try:
        cfg = load_params(params)
        metrics = run_stage(name.value, cfg, root=root, progress=_progress(progress))
    except _user_errors() as exc:
        _fail(exc)
    for key, value in metrics.items():
        typer.echo(f"{name.value}.{key} = {value}")


@app.command("synthesize")
def synthesize(
    cohort: str = typer.Option(None, help="Cohort name: data/synthetic/<cohort>/ (default synthesis.cohort)."),
    n: int = typer.Option(None, "--n", help="Number of videos (default synthesis.n_videos)."),
    strategy: str = typer.Option(None, help="reconstruct | cross | ef_targeted."),
    sampler: str = typer.Option(None, help="dpmsolver++ | ddim | ddpm | lcm (the distilled student, 1-4 steps)."),
    steps: int = typer.Option(None, help="Solver steps."),
    guidance: float = typer.Option(None, help="Classifier-free guidance scale."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameters file."),
    root: Path = typer.Option(Path("."), help="Repository root."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help=PROGRESS_HELP, show_default=False),
) -> None:
    """Produce a synthetic cohort with settings from params.yaml, overridden by these options."""
    from lfmcdm.config import load_params
    from lfmcdm.layout import Layout
    from lfmcdm.stages import run_stage

    chosen = {"cohort": cohort, "n_videos": n, "strategy": strategy, "sampler": sampler, "steps": steps,
              "guidance_scale": guidance}
    overrides = {"synthesis": {k: v for k, v in chosen.items() if v is not None}}
    try:
        cfg = load_params(params, overrides=overrides)
        # another cohort than params.yaml's keeps its metrics beside its videos: metrics/synthesis.json is
        # the pipeline cohort's (a DVC output), and rewriting it would make `dvc status` report a change
        own = cohort is None or cohort == load_params(params).synthesis.cohort
        metrics_path = None if own else Layout(root).synthetic / cfg.synthesis.cohort / COHORT_METRICS
        metrics = run_stage("synthesize", cfg, root=root, progress=_progress(progress), metrics_path=metrics_path)
    except _user_errors() as exc:
        _fail(exc)
    for key, value in metrics.items():
        typer.echo(f"synthesize.{key} = {value}")


cohort_app = typer.Typer(help="Version and share a cohort made outside `dvc repro` (DVC-tracked, on a DVC remote).",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(cohort_app, name="cohort")


@cohort_app.command("push")
def cohort_push(
    name: str = typer.Argument(..., help="Cohort: data/synthetic/<name>/."),
    remote: str = typer.Option(None, help="DVC remote (default: the project's default remote)."),
    root: Path = typer.Option(Path("."), help="Repository root (a DVC project)."),
) -> None:
    """`dvc add` + `dvc push` a cohort; then commit data/synthetic/<name>.dvc to git."""
    from lfmcdm.synth import share

    try:
        target = share.push(root, name, remote)
    except share.ShareError as exc:
        _fail(exc)
    typer.echo(f"pushed {name}; commit it: git add {target.relative_to(Path(root).resolve())} && git commit")


@cohort_app.command("pull")
def cohort_pull(
    name: str = typer.Argument(..., help="Cohort: data/synthetic/<name>/ (its .dvc file must be checked out)."),
    remote: str = typer.Option(None, help="DVC remote (default: the project's default remote)."),
    root: Path = typer.Option(Path("."), help="Repository root (a DVC project)."),
) -> None:
    """`dvc pull` a cohort and check it against its manifest."""
    from lfmcdm.synth import share

    try:
        folder = share.pull(root, name, remote)
    except share.ShareError as exc:
        _fail(exc)
    typer.echo(f"pulled {folder}")


@app.command("stages")
def stages() -> None:
    """List the stages in pipeline order."""
    typer.echo(_STAGE_LIST)


@app.command("check-params")
def check_params(params: Path = typer.Option(Path("params.yaml"), help="Parameters file.")) -> None:
    """Validate params.yaml and print the resolved configuration."""
    from lfmcdm.config import load_params

    try:
        cfg = load_params(params)
    except _user_errors() as exc:
        _fail(exc)
    typer.echo(cfg.model_dump_json(indent=2, exclude={"profiles"}))


if __name__ == "__main__":
    app()
