"""Command line: click commands only. Parse options, call the library, choose the renderer.

Exit codes: 0 every check passed; 1 some gradient disagrees; 2 bad input or usage;
3 a bug in gradcheck itself.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .cli_runtime import (EXIT_BAD_INPUT, EXIT_MISMATCH, EXIT_OK, _emit, _Group, _one_blas_thread,  # noqa: F401
                          _Progress, _timed)
from .errors import GradcheckError
from .outfiles import write_text

@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradcheck")
def main() -> None:
    """Check the analytic gradients of neural-network layers against numerical ones.

    A case (YAML) names the input shape, the layers and the loss; `gradcheck run` compares every
    entry of every layer's input and parameter gradients, in each derivation form, with central
    differences. Exit code 0: all agree; 1: some gradient disagrees; 2: bad input; 3: a bug in
    gradcheck.
    """


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report to FILE instead of stdout.")
@click.option("--junit-xml", type=click.Path(dir_okay=False), help="Also write JUnit XML (one testcase per check) to FILE.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML report (tables, error maps of failing tensors) to FILE.")
@click.option("--verbose", "-v", is_flag=True,
              help="Table format: every row of every case (default: a line per passing case, the failing rows of a failing one).")
@click.option("--save-arrays", type=click.Path(file_okay=False), help="Save inputs, parameters and gradients to DIR/<case>.npz.")
@click.option("--sample", type=click.IntRange(min=1), help="Check K random entries per tensor instead of all.")
@click.option("--form", "forms", multiple=True, metavar="FORM",
              help="Check only this form (repeatable): kron, correlation, spray, custom, or a derivation "
                   "an expression layer names. Default: the case's forms, else all.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Check in N parallel processes (cases, and the layers of a big case); the output is the same as with 1.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Send the checks to a running Dask scheduler (e.g. tcp://host:8786); needs the [dask] extra.")
@click.option("--max-memory", metavar="SIZE",
              help="Refuse a check whose estimated peak memory exceeds SIZE (e.g. 2GiB, 500M). "
                   "Default: $GRADCHECK_MAX_MEMORY, else 90% of the available memory.")
@click.option("--mode", type=click.Choice(["local", "network"]),
              help="local: each layer's backward alone, the loss, and the whole gradient along random "
                   "directions; names every wrong tensor. network: every entry against the whole "
                   "loss. Default: the case's `mode:`, else local.")
@click.option("--annotations", type=click.Choice(["auto", "github", "none"]), default="auto", show_default=True,
              help="github: an ::error line per failing row at its layer's line, the markdown report "
                   "appended to $GITHUB_STEP_SUMMARY. auto: github when GITHUB_ACTIONS=true.")
def run(paths, fmt, output, junit_xml, html_file, verbose, save_arrays, sample, forms, jobs, max_memory, mode,
        annotations, scheduler) -> None:
    """Check the cases in PATHS (files, or folders: every *.yaml inside)."""
    _one_blas_thread()
    from .cases import discover, load
    from .check import run_case
    from .cost import memory_limit
    from .report import save_arrays as save

    files = discover(list(paths))
    if not files:
        raise click.UsageError(f"no case files (*.yaml) in {', '.join(paths)}")
    cases = [load(f) for f in files]
    _known_forms(forms, cases)
    limit = memory_limit(max_memory)
    if jobs > 1 or scheduler:
        from .distribute import run_on_workers

        results = run_on_workers(files, cases, jobs, scheduler, sample, tuple(forms) or None, limit, mode)
    else:
        results = []
        for case in cases:
            with _Progress(case.name) as bar:
                results.append(_timed(run_case, case, sample=sample, forms=tuple(forms) or None, progress=bar.update,
                                      memory_limit=limit, on_estimate=bar.estimate, mode=mode))
    _emit(results, fmt, output, verbose)
    from .report import github

    github.publish(results, annotations, to_stderr=fmt != "table" and not output)
    if junit_xml:
        from .report import junit

        write_text(junit_xml, junit.render(results))
    if html_file:
        from .report import html

        write_text(html_file, html.render(results))
    if save_arrays:
        save(results, save_arrays)
    sys.exit(EXIT_OK if all(r.passed for r in results) else EXIT_MISMATCH)


def _known_forms(forms, cases) -> None:
    """--form names a built-in form or one that a layer of the cases names (expression layers)."""
    from .catalog import get
    from .registry import FORMS

    known = [*FORMS, "custom"]
    known += sorted({f for c in cases for cfg in c.layers for f in get(cfg.type).cls.form_names(cfg.options)}
                    - set(known))
    for f in forms:
        if f not in known:
            raise click.BadParameter(f"unknown form {f!r}; one of: {', '.join(known)}", param_hint="'--form'")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate(paths) -> None:
    """Check that the cases in PATHS are well formed (schema and shapes), without running them."""
    from .cases import discover, load

    files = discover(list(paths))
    if not files:
        raise click.UsageError(f"no case files (*.yaml) in {', '.join(paths)}")
    bad = 0
    for f in files:
        try:
            load(f)
            click.echo(f"ok: {f}")
        except GradcheckError as exc:
            bad += 1
            click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_BAD_INPUT if bad else EXIT_OK)


@main.command()
@click.argument("case", type=click.Path())
@click.option("--eps", "eps", multiple=True, type=click.FloatRange(min=0, min_open=True),
              help="A step to try (repeatable). Default: 1e-2, 1e-3, ..., 1e-10.")
@click.option("--sample", type=click.IntRange(min=1), default=64, show_default=True,
              help="Entries per tensor (seeded).")
@click.option("--form", type=click.Choice(["kron", "correlation", "spray", "custom"]),
              help="Form whose analytic gradient is compared. Default: correlation, else the first.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw error vs eps to FILE (.png, .pdf, .svg).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def sweep(case, eps, sample, form, plot_file, fmt) -> None:
    """Error versus step size for each tensor of CASE: tells truncation from rounding error."""
    _one_blas_thread()
    import json

    from .cases import load
    from .check import tolerance
    from .sweep import plot, render, sweep as run_sweep

    if plot_file and Path(plot_file).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise click.BadParameter("must end in .png, .pdf or .svg", param_hint="--plot")
    c = load(case)
    result = run_sweep(c, tuple(eps) or None, sample, form)
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        from .report import table

        render(result, table.console(), floor=tolerance(c)[0])
    if plot_file:
        plot(result, plot_file)
        click.echo(f"plot: {plot_file}", err=True)


@main.command()
@click.argument("case", type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="SMALL.yaml to write (input or parameter data goes beside it as .npy).")
def shrink(case, output) -> None:
    """Write the smallest case that still fails like CASE: its culprit layer alone, then smaller
    batch, channels, sizes and options while the same tensor keeps failing. Exit 2 if CASE passes."""
    _one_blas_thread()
    from .cases import load
    from .shrink import shrink as shrink_case

    if Path(output).resolve() == Path(case).resolve():
        raise click.BadParameter("must not be CASE itself", param_hint="--output")

    s = shrink_case(load(case), output, say=click.echo)
    click.echo("removed: " + ("; ".join(s.removed) or "nothing"))
    click.echo(f"checked entries: {s.before} -> {s.after} ({100 * s.after / max(1, s.before):.2g}%)")
    click.echo(f"wrote {', '.join(str(f) for f in s.files)}: `gradcheck run {output}` fails on {s.culprit}")


@main.command(name="list")
def list_layers() -> None:
    """List the layers (their options, each gradient form or why it is n/a) and the losses."""
    from .catalog import layers
    from .losses import LOSSES
    from .registry import FORMS

    for name, spec in sorted(layers().items()):
        click.echo(f"{name}: {spec.cls.summary}")
        for o in spec.cls.options:
            shown = {True: "true", False: "false", None: "none"}.get(o.default, o.default) \
                if isinstance(o.default, (bool, type(None))) else o.default
            shown = f"[{', '.join(map(str, shown))}]" if isinstance(shown, tuple) else shown
            default = "required" if o.required else f"default {shown}"
            click.echo(f"  option {o.name} ({default}): {o.help}")
        for f in FORMS:
            if f in spec.forms:
                click.echo(f"  {f:<12} seed {spec.forms[f].seed}")
            else:
                click.echo(f"  {f:<12} n/a: {spec.na.get(f, 'not implemented')}")
        if "custom" in spec.forms:
            click.echo(f"  {'custom':<12} the user's own backward")
        for info in getattr(spec.cls, "optional_forms", ()):       # modes: [fwd], order: 2 (higher.py)
            click.echo(f"  {info.name:<12} {info.seed}")
    for name, cls in sorted(LOSSES.items()):
        click.echo(f"loss {name}: {cls.summary}")


@main.command()
@click.argument("layer")
def new(layer: str) -> None:
    """Print a starter case for LAYER, a layer or a loss (redirect it to a .yaml file)."""
    from .cases import suggest
    from .catalog import layers
    from .losses import LOSSES, starter_case

    known = layers()
    if layer in known:
        click.echo(known[layer].cls.starter_case(), nl=False)
    elif layer in LOSSES:
        click.echo(starter_case(layer), nl=False)
    else:
        names = sorted({*known, *LOSSES})
        raise click.BadParameter(f"unknown layer or loss {layer!r}{suggest(layer, names)}; known: "
                                 f"{', '.join(names)}", param_hint="LAYER")


@main.group(cls=_Group)
def report() -> None:
    """Reports that answer a question with computed numbers, tables and plots."""


@report.command(name="eq7")
@click.argument("case", required=False, type=click.Path())
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="FILE.html (self-contained, plots embedded) or FILE.md (PNGs written beside it).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write every number to FILE (JSON).")
@click.option("--max-bases", type=click.IntRange(1, 8), default=5, show_default=True, help="Sweep M = 1..K.")
@click.option("--scales", default="0.1,0.3,1,3,10", show_default=True, help="Weight scales of the sweep (comma-separated; 1 is always added).")
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True, help="Training steps per rule and learning rate.")
@click.option("--sample", type=click.IntRange(min=1), help="Verification: check K random entries per tensor instead of all (big layers).")
def eq7(case, output, json_path, max_bases, scales, steps, sample) -> None:
    """The ABC-Net Eq. 7 report for the first abc_conv2d layer of CASE (default: a bundled case).

    Exit code 0 when every rule with a surrogate (eq1, eq2, exact, ste_mean_std) matches its own
    finite differences (eq7_literal is expected not to); 1 otherwise; 2 on bad input.
    """
    from .report import eq7 as numbers
    from .report.eq7_render import write

    if Path(output).suffix.lower() not in (".html", ".htm", ".md"):
        raise click.BadParameter("must end in .html or .md", param_hint="--output")
    try:
        scale_values = tuple(float(v) for v in scales.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {scales!r}", param_hint="--scales") from None
    if not scale_values or any(not (v > 0 and v < float("inf")) for v in scale_values):
        raise click.BadParameter("every scale must be a positive finite number", param_hint="--scales")
    c = numbers.load_case(case)
    settings = numbers.Settings(max_bases=max_bases, scales=scale_values, steps=steps, sample=sample)
    with _Progress("eq7 report") as bar:
        r = numbers.build(c, settings, progress=lambda done, total, label: bar.update(done, total))
    files = write(r, output, json_path)
    click.echo("wrote " + ", ".join(str(f) for f in files))
    ok = all(v["passed"] for v in r["verification"] if v["rule"] != "eq7_literal")
    sys.exit(EXIT_OK if ok else EXIT_MISMATCH)
