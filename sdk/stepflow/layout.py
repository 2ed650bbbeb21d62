"""The store map: every key stepflow reads or writes in an object store, spelled once.

One rule for every function here: a key is **relative to the pipeline's folder**
``<root>/<pipeline>/`` (the ``s3_base_uri`` a definition points at, and the root of the
store the runtime and the orchestrator open). Code working from the store root joins with
:func:`in_pipeline`. The one exception is ``stepflow up``'s state, which belongs to no
pipeline (:func:`up_state_key`, relative to the root).

The artifact part of the layout is SageMaker's (a compiled pipeline runs there unchanged);
``.stepflow/`` holds our own records and is never an artifact folder.

The operator roots each ``Pipeline`` resource's store at ``<root>/<namespace>/<name>/``
(:func:`resource_prefix`); ``stepflow up`` and the CLI use the root itself.

```
<pipeline>/sagemaker_remote_function_bootstrap/job_driver.sh
<pipeline>/sagemaker_remote_function_bootstrap/stepflow_runtime/{payload.pkl,metadata.json}
<pipeline>/sm_rf_user_ws/<ts>/workspace.zip
<pipeline>/<step>/<ts>/{function,arguments,pre_exec_script_and_dependencies}/...
<pipeline>/<step>/<ts>/{code,input/<input name>}/...   (processing steps)
<pipeline>/<execution>/{meta.json,execution.json,stop-requested}
<pipeline>/<execution>/<step>/{results,exception}/...
<pipeline>/<execution>/<step>/attempts/<n>.json, logs/<n>.log, jobs/<n>.json
<pipeline>/.stepflow/{index.json,pipeline.json,triggers.json}
<pipeline>/.stepflow/definitions/<hex>.json
<pipeline>/.stepflow/executions/<id>.json
<pipeline>/.stepflow/sagemaker-executions/<id>.json
.stepflow-up/<name>.json
```
"""

from __future__ import annotations

import re

from stepflow.errors import ValidationError

#: Our own records inside a pipeline's folder; no step or execution may use this name.
META = ".stepflow"
#: SageMaker's channel names and folders (the job driver and the runtime read these).
BOOTSTRAP_CHANNEL = "sagemaker_remote_function_bootstrap"
JOB_DRIVER = "job_driver.sh"
WORKSPACE_FOLDER = "sm_rf_user_ws"
WORKSPACE_ARCHIVE = "workspace.zip"
FUNCTION_FOLDER = "function"
ARGUMENTS_FOLDER = "arguments"
DEPENDENCIES_FOLDER = "pre_exec_script_and_dependencies"
#: Inside the dependencies folder: the pre-execution commands, run before the function.
PRE_EXEC_SCRIPT = "pre_exec.sh"
#: A processing step's shipped script, under its ``<step>/<ts>/``.
CODE_FOLDER = "code"
#: A processing step's local inputs, uploaded under its ``<step>/<ts>/input/<input name>/``.
INPUT_FOLDER = "input"
#: The folder every file of ``workspace.zip`` sits under (also the step's working directory).
WORKSPACE_ROOT = "sagemaker_remote_function_workspace"
#: The two objects of one serialized artifact (function, arguments, result, exception).
PAYLOAD = "payload.pkl"
METADATA = "metadata.json"
#: Next to a result's payload when another step reads it: ``{"Result": ..., "Exception": null}``.
RESULTS_DOCUMENT = "results.json"
RESULTS_FOLDER = "results"
EXCEPTION_FOLDER = "exception"
#: ``stepflow up``'s per-pipeline status documents, at the store root.
UP_STATE_FOLDER = ".stepflow-up"

_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


def in_pipeline(pipeline: str, key: str = "") -> str:
    """A pipeline-relative key as a key from the store root."""
    return f"{pipeline}/{key}"


# -- compiled artifacts (SageMaker's layout) ----------------------------------------------


def bootstrap_prefix() -> str:
    return f"{BOOTSTRAP_CHANNEL}/"


def job_driver_key() -> str:
    return f"{BOOTSTRAP_CHANNEL}/{JOB_DRIVER}"


def runtime_wheel_prefix() -> str:
    """The stepflow wheel the job driver installs (``payload.pkl`` + ``metadata.json``, the
    integrity format of every artifact), beside the driver in the bootstrap channel."""
    return f"{BOOTSTRAP_CHANNEL}/stepflow_runtime"


def workspace_key(ts: str) -> str:
    """The workspace archive, under the ``<ts>`` of the step that ships it."""
    return f"{WORKSPACE_FOLDER}/{ts}/{WORKSPACE_ARCHIVE}"


def step_folder(step: str, ts: str) -> str:
    """``<step>/<ts>``: one published version of a step's function, arguments and dependencies."""
    return f"{step}/{ts}"


def function_prefix(step: str, ts: str) -> str:
    return f"{step}/{ts}/{FUNCTION_FOLDER}"


def arguments_prefix(step: str, ts: str) -> str:
    return f"{step}/{ts}/{ARGUMENTS_FOLDER}"


def dependencies_prefix(step: str, ts: str) -> str:
    return f"{step}/{ts}/{DEPENDENCIES_FOLDER}"


def input_prefix(input_name: str) -> str:
    """A processing input's local files, relative to the step's ``<step>/<ts>`` folder."""
    return f"{INPUT_FOLDER}/{input_name}"


def payload_key(prefix: str) -> str:
    """The pickle of the artifact under ``prefix`` (a function, arguments, results... folder)."""
    return f"{prefix}/{PAYLOAD}"


def metadata_key(prefix: str) -> str:
    """The ``metadata.json`` (format, digest or signature) next to :func:`payload_key`."""
    return f"{prefix}/{METADATA}"


# -- published records (.stepflow/) ------------------------------------------------------


def index_key() -> str:
    """Every key this pipeline has published → its sha256: a republish costs one GET."""
    return f"{META}/index.json"


def definitions_prefix() -> str:
    return f"{META}/definitions/"


def definition_key(digest: str) -> str:
    """``.stepflow/definitions/<hex>.json`` for a ``sha256:<hex>`` digest."""
    match = _DIGEST.match(digest)
    if not match:
        raise ValidationError(
            f"Definition digest {digest!r} is not of the form 'sha256:<64 hex digits>'; "
            "the bundle or record holding it is corrupt: compile and publish again.")
    return f"{definitions_prefix()}{match.group(1)}.json"


def pipeline_record_key() -> str:
    """The local and kubernetes backends' pipeline record (name, ARN, current digest)."""
    return f"{META}/pipeline.json"


def triggers_key() -> str:
    """The pipeline's schedules (``Pipeline.put_triggers``), by trigger name."""
    return f"{META}/triggers.json"


def execution_summaries_prefix() -> str:
    return f"{META}/executions/"


def execution_summary_key(execution_id: str) -> str:
    """ListPipelineExecutions' entry for one execution, rewritten as it progresses."""
    return f"{execution_summaries_prefix()}{execution_id}.json"


def sagemaker_execution_key(execution_id: str) -> str:
    """The sagemaker backend's record of one of our execution ids: SageMaker's execution ARN
    (whose last part names the execution's folder here), the idempotency token that
    started it, its parameters and definition digest. Written before StartPipelineExecution
    and again with the ARN, so a restarted controller finds the execution it started."""
    return f"{META}/sagemaker-executions/{execution_id}.json"


# -- one execution ------------------------------------------------------------------------


def execution_prefix(execution_id: str) -> str:
    return f"{execution_id}/"


def execution_meta_key(execution_id: str) -> str:
    """Written first when an execution is created: its definition digest and display name."""
    return f"{execution_id}/meta.json"


def execution_state_key(execution_id: str) -> str:
    """The engine's state; the orchestrator writes it before acting (write-ahead)."""
    return f"{execution_id}/execution.json"


def stop_request_key(execution_id: str) -> str:
    return f"{execution_id}/stop-requested"


def results_prefix(execution_id: str, step: str) -> str:
    return f"{execution_id}/{step}/{RESULTS_FOLDER}"


def exception_prefix(execution_id: str, step: str) -> str:
    return f"{execution_id}/{step}/{EXCEPTION_FOLDER}"


def attempt_record_key(execution_id: str, step: str, attempt: int) -> str:
    return f"{execution_id}/{step}/attempts/{attempt}.json"


def attempt_log_key(execution_id: str, step: str, attempt: int) -> str:
    return f"{execution_id}/{step}/logs/{attempt}.log"


def job_description_key(execution_id: str, step: str, attempt: int) -> str:
    """The job an attempt ran, as SageMaker's DescribeProcessingJob/DescribeTrainingJob
    answers: written by the orchestrator (never the attempt), read by the expressions of
    later steps (``backends.job_descriptions``)."""
    return f"{execution_id}/{step}/jobs/{attempt}.json"


# -- GitOps resources ---------------------------------------------------------------------


def resource_prefix(namespace: str, name: str) -> str:
    """Relative to the configured root: the store of the ``Pipeline`` resource ``namespace/name``.

    The operator publishes and executes each resource's pipeline under its own folder, as
    Flux's source-controller keeps each object's artifacts under ``<kind>/<namespace>/<name>/``:
    two resources whose modules name their pipeline alike (``prod`` on main, ``staging`` on
    dev) never share a definition, an index or an execution record.
    """
    return f"{namespace}/{name}"


# -- stepflow up --------------------------------------------------------------------------


def up_state_key(name: str) -> str:
    """Relative to the store *root*: ``stepflow up``'s status of one Pipeline manifest."""
    return f"{UP_STATE_FOLDER}/{name}.json"
