"""Parsing the ContainerArguments a step is launched with, already resolved
(docs/SAGEMAKER-COMPATIBILITY.md, "Function steps")."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepInvocation:
    s3_base_uri: str
    step_name: str
    execution_id: str
    func_step_s3_dir: str
    client_python_version: str | None = None
    dependency_file: str | None = None
    property_references: dict[str, str] = field(default_factory=dict)
    serialize_output_to_json: bool = False
    attempt: int = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stepflow.runtime", add_help=True)
    p.add_argument("--s3_base_uri", required=True)
    p.add_argument("--pipeline_step_name", required=True)
    p.add_argument("--pipeline_execution_id", required=True)
    p.add_argument("--func_step_s3_dir", required=True)
    p.add_argument("--client_python_version")
    p.add_argument("--dependency_settings")
    p.add_argument("--property_references", nargs="+", default=[])
    p.add_argument("--serialize_output_to_json", default="false")
    p.add_argument("--attempt", type=int, default=1)
    return p


def parse(argv: Sequence[str]) -> StepInvocation:
    """Parse known arguments and ignore the rest, as SageMaker's invoke_function does."""
    ns, _unknown = _parser().parse_known_args(list(argv))
    refs = list(ns.property_references)
    if len(refs) % 2:
        raise ValueError(
            f"--property_references needs key/value pairs, got an odd count ({len(refs)})"
        )
    settings = json.loads(ns.dependency_settings) if ns.dependency_settings else None
    return StepInvocation(
        s3_base_uri=ns.s3_base_uri.rstrip("/"),
        step_name=ns.pipeline_step_name,
        execution_id=ns.pipeline_execution_id,
        func_step_s3_dir=ns.func_step_s3_dir,
        client_python_version=ns.client_python_version,
        dependency_file=(settings or {}).get("dependency_file"),
        property_references=dict(zip(refs[::2], refs[1::2], strict=False)),
        serialize_output_to_json=ns.serialize_output_to_json.lower() == "true",
        attempt=ns.attempt,
    )
