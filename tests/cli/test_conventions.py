"""The conventions of kubectl, flux and argo users: signals, output formats, completion,
`python -m`, --debug anywhere, help with examples, clean piped tables, graph formats."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click
import pytest
import yaml
from tests.cli.project import Project
from tests.testenv import wait_for

from stepflow.cli.main import main as stepflow_group

TYPED = """
from stepflow.workflow.parameters import ParameterBoolean, ParameterFloat, ParameterInteger

epochs = ParameterInteger("Epochs", default_value=1)
rate = ParameterFloat("Rate", default_value=0.5)
fast = ParameterBoolean("Fast", default_value=False)

@step
def train(epochs, rate, fast):
    return {"epochs": epochs, "rate": rate, "fast": fast}

pipeline = Pipeline(name="typed", parameters=[epochs, rate, fast], steps=[train(epochs, rate, fast)])
"""

SLOW = """
@step
def slow(marker):
    import time
    open(marker, "w").close()
    time.sleep(120)
    return 1

pipeline = Pipeline(name="slow", steps=[slow({marker!r})])
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture
def executed(project: Project) -> tuple[Project, str]:
    module = project.write(TYPED)
    proc = project.run("run", module, "-p", "Epochs=3", "-p", "Fast=true", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return project, json.loads(proc.stdout)["executionId"]


def test_sigterm_stops_the_execution_like_ctrl_c(project: Project, tmp_path: Path):
    marker = tmp_path / "started"
    module = project.write(SLOW.format(marker=str(marker)))
    proc = project.popen("run", module, "-o", "json")
    try:
        wait_for(marker.exists, timeout=120, message="the step never started")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    assert "SIGTERM: stopping the execution" in err
    assert json.loads(out)["status"] == "Stopped"


def test_ctrl_c_while_starting_up_is_not_a_traceback(project: Project, tmp_path: Path):
    marker = tmp_path / "importing"
    module = project.write(f"""
        import time
        open({str(marker)!r}, "w").close()
        time.sleep(60)  # a slow import: the user presses Ctrl-C

        @step
        def one():
            return 1

        pipeline = Pipeline(name="one", steps=[one()])
    """)
    proc = project.popen("run", module)
    try:
        wait_for(marker.exists, timeout=60, message="the pipeline module was never imported")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err


def test_json_and_yaml_have_typed_values_and_agree(executed):
    project, execution = executed
    as_json = json.loads(project.run("status", execution, "-o", "json").stdout)
    as_yaml = yaml.safe_load(project.run("status", execution, "-o", "yaml").stdout)
    assert as_json == as_yaml
    assert as_json["parameters"] == {"Epochs": 3, "Rate": 0.5, "Fast": True}
    listed = json.loads(project.run("executions", "-o", "json").stdout)
    assert [(r["executionId"], r["status"], r["orphaned"]) for r in listed] == [(execution, "Succeeded", False)]
    assert yaml.safe_load(project.run("result", execution, "train", "-o", "yaml").stdout) == \
        {"epochs": 3, "rate": 0.5, "fast": True}
    validate = project.run("validate", "flow.py", "-o", "json")
    assert json.loads(validate.stdout) == {"pipeline": "typed", "steps": 1, "parameters": [
        {"name": "Epochs", "type": "Integer", "default": 1}, {"name": "Rate", "type": "Float", "default": 0.5},
        {"name": "Fast", "type": "Boolean", "default": False}]}


def test_wide_tables_and_no_trailing_spaces_in_a_pipe(executed):
    project, execution = executed
    normal = project.run("executions").stdout.splitlines()
    wide = project.run("executions", "-o", "wide").stdout.splitlines()
    assert "ENDED" in wide[0] and "ENDED" not in normal[0]
    for command in (["executions"], ["executions", "-o", "wide"], ["status", execution], ["pipelines"],
                    ["pipelines", "-o", "wide"]):
        lines = project.run(*command).stdout.splitlines()
        assert lines and all(line == line.rstrip() for line in lines), (command, lines)


def test_completion_scripts_and_completing_ids_and_steps(executed):
    project, execution = executed
    for shell in ("bash", "zsh", "fish"):
        script = project.run("completion", shell)
        assert script.returncode == 0 and "_STEPFLOW_COMPLETE" in script.stdout, script.stderr
    env = {**project.env, "_STEPFLOW_COMPLETE": "bash_complete"}

    def complete(words: str) -> list[str]:
        import subprocess

        from tests.cli.project import STEPFLOW

        proc = subprocess.run([STEPFLOW], env={**env, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1
                              + words.endswith(" "))}, capture_output=True, text=True, cwd=project.dir)
        return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]

    assert complete(f"stepflow logs {execution[:6]}") == [execution]
    assert complete(f"stepflow logs {execution} ") == ["train"]
    assert complete("stepflow delete pipeline ty") == ["typed"]


def test_python_dash_m_and_debug_after_the_command(project: Project):
    version = project.run("-m", "stepflow", "--version", command=[sys.executable])
    assert version.returncode == 0 and "version" in version.stdout
    plain = project.run("status", "nope")
    assert plain.returncode == 1 and "error (ExecutionNotFound)" in plain.stderr and "Traceback" not in plain.stderr
    debug = project.run("status", "nope", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "BackendError" in debug.stderr


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in sorted(group.commands.items()):
        out.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            out += _commands(command, f"{prefix}{name} ")
    return out


def test_every_command_has_examples_and_the_summaries_are_whole(project: Project):
    top = project.run("--help").stdout
    commands = top.split("Commands:\n", 1)[1]
    assert "..." not in commands  # click cuts long summaries with "..."
    assert "  executions  List executions, newest first (of one PIPELINE, or of every" in commands
    for name, command in _commands(stepflow_group):
        if name == "get executions" or name == "get pipelines":
            continue  # the same commands as `executions` and `pipelines`
        assert "Examples:" in (command.help or ""), f"`stepflow {name} --help` has no Examples section"
    text = project.run("run", "--help").stdout
    assert "  Examples:\n    stepflow run pipelines/churn.py\n" in text


def test_graph_format_from_the_extension_with_parameters_and_conditions(project: Project):
    module = project.write("""
        from stepflow.workflow.condition_step import ConditionStep
        from stepflow.workflow.conditions import ConditionGreaterThanOrEqualTo
        from stepflow.workflow.fail_step import FailStep
        from stepflow.workflow.parameters import ParameterFloat

        threshold = ParameterFloat("Threshold", default_value=0.75)

        @step
        def evaluate():
            return {"accuracy": 0.8}

        @step
        def register():
            return 1

        metrics = evaluate()
        gate = ConditionStep(name="gate", conditions=[ConditionGreaterThanOrEqualTo(left=metrics["accuracy"],
                             right=threshold)], if_steps=[register()], else_steps=[FailStep(name="too-low")])
        pipeline = Pipeline(name="gated", parameters=[threshold], steps=[gate])
    """)
    assert project.run("graph", module, "-o", "g.dot").returncode == 0
    dot = (project.dir / "g.dot").read_text()
    assert dot.startswith('digraph "gated"')
    assert "Threshold: Float = 0.75" in dot and "evaluate['accuracy'] >= Threshold" in dot
    mermaid = project.run("graph", module).stdout
    assert mermaid.startswith("flowchart TD") and "evaluate['accuracy'] >= Threshold" in mermaid
    bad = project.run("graph", module, "-o", "g.txt")
    assert bad.returncode == 2 and "cannot tell the format of 'g.txt'" in bad.stderr
    if __import__("shutil").which("dot"):
        assert project.run("graph", module, "-o", "g.png").returncode == 0
        assert (project.dir / "g.png").read_bytes().startswith(b"\x89PNG")
