"""``instance_type`` → what a step's container requests: the instance table.

SageMaker sizes a step by an instance type; a cluster sizes a pod by requests and limits.
The table says what each type means here. Defaults cover the common ``ml.*`` types with
their AWS sizes; an installation replaces or extends it (the chart's ``steps.instanceTypes``,
mounted from a ConfigMap and named by ``STEPFLOW_INSTANCE_TYPES_FILE``). A type the table
does not know is refused when the pipeline is published, not discovered as a pending pod.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepflow.errors import ConfigurationError

GPU_RESOURCE = "nvidia.com/gpu"
_CPU = re.compile(r"^\d+(\.\d+)?m?$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")


@dataclass(frozen=True)
class InstanceType:
    """What one instance type requests. Memory and GPUs are also the limits (a step gets what
    it names, and an overrun is an OOM kill the step's status names); CPU has no limit, so a
    step is never throttled below what the node has free. ``volume_size`` (SageMaker's
    default is 30 GB for every step) caps the pod's scratch space without reserving it: a
    reservation of 30 Gi per pod would let a 100 GB node run three steps at once."""

    cpu: str
    memory: str
    gpu: int = 0

    def resources(self, volume_gb: int | None = None) -> dict[str, dict[str, str]]:
        limits = {"memory": self.memory}
        if self.gpu:
            limits[GPU_RESOURCE] = str(self.gpu)
        requests = {"cpu": self.cpu, **limits}
        if volume_gb:
            limits["ephemeral-storage"] = f"{volume_gb}Gi"
            requests["ephemeral-storage"] = "0"  # else the request defaults to the limit
        return {"requests": requests, "limits": limits}


#: AWS's sizes of the common SageMaker instance types (vCPU, GiB, GPUs).
DEFAULT_INSTANCE_TYPES: dict[str, InstanceType] = {
    "ml.t3.medium": InstanceType("2", "4Gi"),
    "ml.t3.large": InstanceType("2", "8Gi"),
    "ml.t3.xlarge": InstanceType("4", "16Gi"),
    "ml.t3.2xlarge": InstanceType("8", "32Gi"),
    "ml.m5.large": InstanceType("2", "8Gi"),
    "ml.m5.xlarge": InstanceType("4", "16Gi"),
    "ml.m5.2xlarge": InstanceType("8", "32Gi"),
    "ml.m5.4xlarge": InstanceType("16", "64Gi"),
    "ml.m5.12xlarge": InstanceType("48", "192Gi"),
    "ml.c5.large": InstanceType("2", "4Gi"),
    "ml.c5.xlarge": InstanceType("4", "8Gi"),
    "ml.c5.2xlarge": InstanceType("8", "16Gi"),
    "ml.c5.4xlarge": InstanceType("16", "32Gi"),
    "ml.r5.large": InstanceType("2", "16Gi"),
    "ml.r5.xlarge": InstanceType("4", "32Gi"),
    "ml.r5.2xlarge": InstanceType("8", "64Gi"),
    "ml.g4dn.xlarge": InstanceType("4", "16Gi", 1),
    "ml.g4dn.2xlarge": InstanceType("8", "32Gi", 1),
    "ml.g5.xlarge": InstanceType("4", "16Gi", 1),
    "ml.g5.2xlarge": InstanceType("8", "32Gi", 1),
    "ml.g5.12xlarge": InstanceType("48", "192Gi", 4),
    "ml.p3.2xlarge": InstanceType("8", "61Gi", 1),
}


def parse_table(data: Any, origin: str) -> dict[str, InstanceType]:
    """``{type: {cpu, memory, gpu}}`` (the ConfigMap's YAML) checked entry by entry."""
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{origin}: the instance table must be a mapping of instance type to "
                                 "{cpu, memory, gpu}, e.g. {ml.m5.large: {cpu: '2', memory: 8Gi}}.",
                                 reason="InvalidInstanceTypes")
    table = {}
    for name, entry in data.items():
        where = f"{origin}: {name}"
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{where}: give {{cpu, memory, gpu}}, not {entry!r}.",
                                     reason="InvalidInstanceTypes")
        cpu, memory, gpu = str(entry.get("cpu", "")), str(entry.get("memory", "")), entry.get("gpu", 0)
        if not _CPU.match(cpu):
            raise ConfigurationError(f"{where}: cpu {cpu!r} is not a CPU quantity (e.g. '2' or '500m').",
                                     reason="InvalidInstanceTypes")
        if not _QUANTITY.match(memory):
            raise ConfigurationError(f"{where}: memory {memory!r} is not a quantity (e.g. 8Gi or 512Mi).",
                                     reason="InvalidInstanceTypes")
        if not isinstance(gpu, int) or isinstance(gpu, bool) or gpu < 0:
            raise ConfigurationError(f"{where}: gpu {gpu!r} must be a whole number ≥ 0.",
                                     reason="InvalidInstanceTypes")
        table[str(name)] = InstanceType(cpu, memory, gpu)
    return table


def load_table(path: str | Path | None) -> dict[str, InstanceType]:
    """The defaults, with the file's entries on top (a type listed there replaces the default)."""
    table = dict(DEFAULT_INSTANCE_TYPES)
    if path:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"Cannot read the instance table {path}: {exc}",
                                     reason="InvalidInstanceTypes") from None
        table.update(parse_table(data, str(path)))
    return table
