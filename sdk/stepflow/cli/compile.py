"""``stepflow compile``, ``stepflow validate`` and ``stepflow graph``.

They load ``PATH[:ATTR]`` from the current directory (the project root), in a process
with a fixed hash seed so compiled bytes do not depend on the interpreter run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from stepflow.cli.common import DATA_FORMATS, dump, load_target, output_option
from stepflow.errors import ConfigurationError, StepflowError

_TARGET_HELP = "PATH[:ATTR]: a file (pipelines/churn.py) or dotted module, and the Pipeline attribute"


def _previous_index(pipeline) -> dict[str, str] | None:  # noqa: ANN001
    """What is already published, so unchanged steps keep their folders; None if unreadable."""
    from stepflow.compiler.publish import read_index

    try:
        return read_index(pipeline.session.store, pipeline.name)
    except StepflowError as exc:
        click.echo(f"warning: not reusing published folders ({exc.message})", err=True)
        return None


@click.command("compile")
@click.argument("target", metavar="PATH[:ATTR]")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the definition JSON here instead of standard output.")
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False),
              help="Keep the compiled bundle (definition and artifacts) in this folder.")
@click.option("--s3-root-uri", help="Store root the definition points at (default: configured).")
def compile_command(target: str, output: str | None, bundle_dir: str | None,
                    s3_root_uri: str | None) -> None:
    """Compile a pipeline to its definition JSON (nothing is uploaded).

    \b
    Examples:
      stepflow compile pipelines/churn.py > definition.json
      stepflow compile pipelines/churn.py -o definition.json --bundle build/
    """
    from stepflow.compiler import compile_pipeline

    pipeline = load_target(target)
    bundle = compile_pipeline(
        pipeline, s3_root_uri=s3_root_uri or pipeline.session.s3_root_uri, out_dir=bundle_dir,
        previous_index=_previous_index(pipeline),
        integrity_key=pipeline.session.integrity_key)
    if output:
        Path(output).write_bytes(bundle.definition_bytes)
        click.echo(f"{bundle.pipeline_name}: {bundle.step_count} steps, {bundle.digest} -> {output}",
                   err=True)
    else:
        click.echo(bundle.definition_bytes.decode("utf-8"))
    if bundle_dir is None:
        shutil.rmtree(bundle.root, ignore_errors=True)


@click.command("validate")
@click.argument("target", metavar="PATH[:ATTR]")
@output_option()
def validate_command(target: str, output: str) -> None:
    """Check a pipeline compiles: graph, names, cycles, parameters, picklable arguments.

    Exit code: 0 when it compiles, 1 with the first problem (file:line, what, how to fix).

    \b
    Examples:
      stepflow validate pipelines/churn.py
      stepflow validate pipelines/churn.py:pipeline -o json
    """
    from stepflow.compiler import compile_pipeline

    pipeline = load_target(target)
    with tempfile.TemporaryDirectory(prefix="stepflow-validate-") as tmp:
        bundle = compile_pipeline(pipeline, s3_root_uri="file:///validate", out_dir=tmp)
        definition = json.loads(bundle.definition_bytes)
    if output in DATA_FORMATS:
        parameters = [{"name": p["Name"], "type": p["Type"], "default": p.get("DefaultValue")}
                      for p in definition.get("Parameters", [])]
        click.echo(dump({"pipeline": bundle.pipeline_name, "steps": bundle.step_count,
                         "parameters": parameters}, output), nl=False)
    else:
        click.echo(f"ok: pipeline '{bundle.pipeline_name}', {bundle.step_count} steps")


_GRAPH_FORMATS = {".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot", ".svg": "svg",
                  ".png": "png"}


@click.command("graph")
@click.argument("target", metavar="PATH[:ATTR]")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "svg", "png"]),
              help="Default: from the -o file's extension (.mmd .dot .gv .svg .png), else mermaid.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write here instead of standard output (required for png).")
def graph_command(target: str, fmt: str | None, output: str | None) -> None:
    """Draw the pipeline's steps, dependencies, conditions and parameters.

    \b
    Examples:
      stepflow graph pipelines/churn.py                 # Mermaid text
      stepflow graph pipelines/churn.py -o churn.png    # format from the extension
      stepflow graph pipelines/churn.py --format svg > churn.svg
    """
    from stepflow.cli.render_graph import to_dot, to_mermaid
    from stepflow.compiler.graph import build_graph
    from stepflow.compiler.validate import validate

    if fmt is None:
        suffix = Path(output).suffix.lower() if output else ""
        if output and suffix not in _GRAPH_FORMATS:
            raise click.BadParameter(f"cannot tell the format of {output!r} from its extension; name it "
                                     f"{'/'.join(sorted(_GRAPH_FORMATS))} or pass --format.", param_hint="-o")
        fmt = _GRAPH_FORMATS.get(suffix, "mermaid")
    pipeline = load_target(target)
    graph = build_graph(pipeline)
    validate(pipeline, graph)
    with graph.names.active():  # steps show the names this pipeline gives them
        source = to_mermaid(pipeline, graph) if fmt == "mermaid" else to_dot(pipeline, graph)
    data = source.encode() if fmt in ("mermaid", "dot") else _render_dot(source, fmt)
    if output:
        Path(output).write_bytes(data)
    elif fmt == "png":
        raise ConfigurationError("PNG is binary: give a file with -o graph.png.")
    else:
        click.echo(data.decode())


def _render_dot(source: str, fmt: str) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise ConfigurationError(
            f"--format {fmt} needs Graphviz's `dot` program, which is not installed. Install "
            "it (Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz) "
            "or use --format mermaid / dot.", reason="GraphvizMissing")
    proc = subprocess.run([dot, f"-T{fmt}"], input=source.encode(), capture_output=True)
    if proc.returncode != 0:
        raise ConfigurationError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


COMMANDS = [compile_command, validate_command, graph_command]
