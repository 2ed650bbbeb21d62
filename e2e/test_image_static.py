"""operator/Dockerfile agrees with the chart, checked without building it: ``docker run`` of the
image starts what the chart's Deployment starts, and the image's build interpreter is the
chart's ``operator.buildPython``. Needs helm only (rendering), not docker.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from e2e.cluster import CHART, DOCKERFILE, run, tool_path


def instructions() -> dict[str, list[str]]:
    """Each instruction of the final stage, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    final = re.split(r"^FROM\s", joined, flags=re.MULTILINE)[-1]
    found: dict[str, list[str]] = {}
    for line in final.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword:
            found.setdefault(keyword.upper(), []).append(rest.strip())
    return found


def test_image_runs_what_the_chart_runs():
    helm = tool_path("helm")
    if helm is None:
        pytest.skip("helm is needed to render the chart: scripts/testenv install helm")
    rendered = run([helm, "template", "sf", str(CHART)]).stdout
    deployment = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    found = instructions()
    assert json.loads(found["ENTRYPOINT"][-1]) == container["command"]
    assert json.loads(found["CMD"][-1]) == container["args"]


def test_build_interpreter_and_user_are_the_charts():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    found = instructions()
    assert f"STEPFLOW_BUILD_PYTHON={values['operator']['buildPython']}" in " ".join(found["ENV"]).split()
    uid = values["sandbox"]["nonRootUid"]
    assert found["USER"][-1] == f"{uid}:{uid}"
