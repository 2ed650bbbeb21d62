"""Configuration: where artifacts go and the defaults of every ``@step``.

The file format is the SageMaker Python SDK's own ``config.yaml`` (``SchemaVersion``,
``SageMaker.PythonSDK.Modules.RemoteFunction.*``, ...), so a data scientist's existing file
works unchanged, plus a ``Stepflow`` section for what SageMaker has no key for. SageMaker's
own files are read too, where the SDK looks for them, each below ours of the same rank:
SageMaker admin < stepflow admin < SageMaker user < stepflow user < ``$STEPFLOW_CONFIG``
(maps deep-merged, lists replaced); the environment overrides them all.
``docs/CONFIGURATION.md`` is the user-facing reference.

Precedence per key is decorator > environment > file > default; this module resolves the
last three and the workflow layer applies the decorator's values on top.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import yaml

from stepflow.errors import ConfigurationError, SourceLocation, StepflowError
from stepflow.storage import ENDPOINT_ENV, open_store

__all__ = [
    "StepflowConfig",
    "load_config",
    "parse_integrity_key",
    "default_s3_root_uri",
    "user_config_path",
    "ADMIN_CONFIG_PATH",
    "sagemaker_admin_config_path",
    "sagemaker_user_config_path",
]

ADMIN_CONFIG_PATH = Path("/etc/xdg/stepflow/config.yaml")

ENV_CONFIG = "STEPFLOW_CONFIG"
ENV_USER_CONFIG = "STEPFLOW_USER_CONFIG"
ENV_ADMIN_CONFIG = "STEPFLOW_ADMIN_CONFIG"
ENV_SAGEMAKER_ADMIN_CONFIG = "SAGEMAKER_ADMIN_CONFIG_OVERRIDE"
ENV_SAGEMAKER_USER_CONFIG = "SAGEMAKER_USER_CONFIG_OVERRIDE"
_CONFIG_FILE_NAME = "config.yaml"
ENV_ROOT_URI = "STEPFLOW_S3_ROOT_URI"
ENV_ENDPOINT = ENDPOINT_ENV
ENV_KEY = "STEPFLOW_INTEGRITY_KEY"
ENV_KEY_FILE = "STEPFLOW_INTEGRITY_KEY_FILE"
ENV_BACKEND = "STEPFLOW_BACKEND"

_MIN_KEY_BYTES = 16
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_KEY_ADVICE = "Generate one with `openssl rand -hex 32`."


# --- schema ------------------------------------------------------------------------------
# A schema is either a type check (a callable returning an error text or None) or a dict of
# allowed keys → schema. Keys not in a dict schema are errors, except in the SageMaker
# sections listed in _IGNORED, which belong to SageMaker features stepflow does not use.

Check = Callable[[Any], "str | None"]


def _is_str(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string (quote it in YAML)"


def _is_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _is_str_list(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    return None if ok else "must be a list of strings"


def _is_str_map(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )
    return None if ok else "must be a map of strings to strings (quote numbers and booleans)"


def _is_tags(value: Any) -> str | None:
    ok = isinstance(value, list) and all(
        isinstance(tag, dict) and set(tag) == {"Key", "Value"}
        and isinstance(tag["Key"], str) and isinstance(tag["Value"], str)
        for tag in value
    )
    return None if ok else "must be a list of {Key: <string>, Value: <string>} entries"


_REMOTE_FUNCTION: dict[str, Any] = {
    "Dependencies": _is_str,
    "PreExecutionCommands": _is_str_list,
    "PreExecutionScript": _is_str,
    "EnvironmentVariables": _is_str_map,
    "ImageUri": _is_str,
    "IncludeLocalWorkDir": _is_bool,
    "CustomFileFilter": {"IgnoreNamePatterns": _is_str_list},
    "InstanceType": _is_str,
    "JobCondaEnvironment": _is_str,
    "RoleArn": _is_str,
    "S3KmsKeyId": _is_str,
    "S3RootUri": _is_str,
    "Tags": _is_tags,
    "VolumeKmsKeyId": _is_str,
    "VpcConfig": {"Subnets": _is_str_list, "SecurityGroupIds": _is_str_list},
    "EnableInterContainerTrafficEncryption": _is_bool,
}

_SCHEMA: dict[str, Any] = {
    "SchemaVersion": lambda v: None if v in ("1.0", 1.0) else 'must be "1.0"',
    "Stepflow": {"S3EndpointUrl": _is_str, "IntegrityKeyFile": _is_str, "Backend": _is_str},
    "SageMaker": {
        "PythonSDK": {
            "Modules": {
                "RemoteFunction": _REMOTE_FUNCTION,
                "Session": {"DefaultS3Bucket": _is_str, "DefaultS3ObjectKeyPrefix": _is_str},
            },
        },
        "Pipeline": {"RoleArn": _is_str, "Tags": _is_tags},
    },
}

# Valid in a SageMaker config file, meaningless to stepflow: accepted and ignored.
_IGNORED = {
    ("SageMaker",): {
        "AutoMLJob", "CompilationJob", "EdgePackagingJob", "Endpoint", "EndpointConfig",
        "FeatureGroup", "Model", "ModelPackage", "MonitoringSchedule", "ProcessingJob",
        "TrainingJob", "TransformJob",
    },
    ("SageMaker", "PythonSDK", "Modules"): {"Estimator", "TelemetryOptOut"},
    (): {"CustomParameters", "local"},
}

_RF = ("SageMaker", "PythonSDK", "Modules", "RemoteFunction")
_SESSION = ("SageMaker", "PythonSDK", "Modules", "Session")

# Environment variables that override one RemoteFunction key each.
_ENV_REMOTE_FUNCTION = {
    "STEPFLOW_IMAGE_URI": "ImageUri",
    "STEPFLOW_INSTANCE_TYPE": "InstanceType",
    "STEPFLOW_ROLE_ARN": "RoleArn",
    "STEPFLOW_INCLUDE_LOCAL_WORKDIR": "IncludeLocalWorkDir",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class StepflowConfig:
    """The resolved configuration (files and environment; the decorator applies on top).

    ``remote_function`` holds only the keys that are configured, named and nested as in
    SageMaker's ``RemoteFunction`` section (``{"CustomFileFilter": {"IgnoreNamePatterns":
    [...]}, "VpcConfig": {"Subnets": [...], ...}, ...}``); an absent key means "not
    configured, use the built-in default". ``pipeline`` holds ``SageMaker.Pipeline``'s
    ``RoleArn`` and ``Tags``. ``session`` holds ``SageMaker.PythonSDK.Modules.Session``'s
    ``DefaultS3Bucket`` and ``DefaultS3ObjectKeyPrefix``. ``origins`` says where each resolved value came from (a file
    path, ``env NAME`` or ``default``), for messages.
    """

    s3_root_uri: str
    s3_endpoint_url: str | None = None
    integrity_key: bytes | None = field(default=None, repr=False)
    remote_function: dict[str, Any] = field(default_factory=dict)
    pipeline: dict[str, Any] = field(default_factory=dict)
    session: dict[str, Any] = field(default_factory=dict)
    files: tuple[Path | str, ...] = ()
    origins: dict[str, str] = field(default_factory=dict)
    #: Where ``Pipeline.upsert()``/``start()`` go: ``local`` or ``sagemaker`` (checked by
    #: ``stepflow.backends.default_backend``, which knows the backends).
    backend: str = "local"


def user_config_path() -> Path:
    """The per-user file, e.g. ``~/.config/stepflow/config.yaml`` on Linux."""
    return platformdirs.user_config_path("stepflow") / "config.yaml"


def sagemaker_admin_config_path() -> Path:
    """Where the SageMaker SDK looks for the admin file, e.g. ``/etc/xdg/sagemaker/config.yaml``
    (platformdirs ``site_config_dir``: the first of ``$XDG_CONFIG_DIRS``)."""
    return platformdirs.site_config_path("sagemaker") / _CONFIG_FILE_NAME


def sagemaker_user_config_path() -> Path:
    """Where the SageMaker SDK looks for the user's file, e.g. ``~/.config/sagemaker/config.yaml``."""
    return platformdirs.user_config_path("sagemaker") / _CONFIG_FILE_NAME


def default_s3_root_uri() -> str:
    """Where artifacts go when nothing is configured: a folder in the user's data directory."""
    return (platformdirs.user_data_path("stepflow") / "store").as_uri()


def parse_integrity_key(text: str, origin: str) -> bytes:
    """Decode a hex key (at least 16 bytes). The key's value never appears in an error."""
    text = text.strip()
    if not _HEX.match(text):
        raise ConfigurationError(
            f"The integrity key from {origin} is not hexadecimal (an even number of 0-9a-f "
            f"digits). {_KEY_ADVICE}"
        )
    key = bytes.fromhex(text)
    if len(key) < _MIN_KEY_BYTES:
        raise ConfigurationError(
            f"The integrity key from {origin} is {len(key)} bytes; use at least "
            f"{_MIN_KEY_BYTES} bytes ({2 * _MIN_KEY_BYTES} hex digits). {_KEY_ADVICE}"
        )
    return key


def _key_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    """Record the line of every mapping key, so errors can point into the file."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (str(key_node.value),)
            out[child] = key_node.start_mark.line + 1
            _key_lines(value_node, child, out)


_PATH_VARIABLES = (f"{ENV_CONFIG}, {ENV_USER_CONFIG}, {ENV_ADMIN_CONFIG}, "
                   f"{ENV_SAGEMAKER_USER_CONFIG}, {ENV_SAGEMAKER_ADMIN_CONFIG}")


def _read_text(source: str) -> str:
    """A file's text; as in the SageMaker SDK, a folder or an ``s3://`` prefix means the
    ``config.yaml`` inside it."""
    if source.startswith("s3://"):
        store = open_store(source.rsplit("/", 1)[0] if source.endswith(".yaml") else source)
        name = source.rsplit("/", 1)[1] if source.endswith(".yaml") else _CONFIG_FILE_NAME
        return store.get_bytes(name).decode("utf-8")
    path = Path(source)
    if path.is_dir():
        path = path / _CONFIG_FILE_NAME
    return path.read_text(encoding="utf-8")


def _read(path: Path | str) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    try:
        text = _read_text(str(path))
    except (OSError, UnicodeDecodeError, StepflowError) as exc:
        problem = getattr(exc, "strerror", None) or getattr(exc, "message", None) or exc
        raise ConfigurationError(
            f"Cannot read configuration file {path}: {problem}. Fix the path or "
            f"unset the variable that names it ({_PATH_VARIABLES}).",
            location=SourceLocation(str(path)),
        ) from exc
    try:
        data = yaml.safe_load(text)
        lines: dict[tuple[str, ...], int] = {}
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _key_lines(node, (), lines)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigurationError(
            f"Configuration file {path} is not valid YAML: {getattr(exc, 'problem', None) or exc}. "
            "Fix the syntax at the line shown.",
            location=SourceLocation(str(path), mark.line + 1 if mark else None),
        ) from exc
    if data is None:
        return {}, lines
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"Configuration file {path} must contain a YAML mapping at the top level "
            "(e.g. `SchemaVersion: '1.0'` then `SageMaker:` ...).",
            location=SourceLocation(str(path), 1),
        )
    return data, lines


def _validate(value: Any, schema: Any, path: tuple[str, ...], file: Path | str,
              lines: dict[tuple[str, ...], int]) -> None:
    where = SourceLocation(str(file), lines.get(path))
    dotted = ".".join(path)
    if callable(schema):
        problem = schema(value)
        if problem:
            raise ConfigurationError(
                f"Configuration key {dotted} in {file} {problem}.", location=where
            )
        return
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"Configuration key {dotted} in {file} must be a mapping with keys: "
            f"{', '.join(schema)}.",
            location=where,
        )
    ignored = _IGNORED.get(path, set())
    for key, child in value.items():
        if key in schema:
            _validate(child, schema[key], path + (key,), file, lines)
        elif key not in ignored:
            child_path = path + (str(key),)
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            raise ConfigurationError(
                f"Unknown configuration key {'.'.join(child_path)} in {file}. "
                + (f"Did you mean {close[0]}? " if close else "")
                + f"Allowed here: {', '.join(schema)}"
                + (f" (and SageMaker's {', '.join(sorted(ignored))}, which stepflow ignores)"
                   if ignored else "")
                + ". docs/CONFIGURATION.md lists every key.",
                location=SourceLocation(str(file), lines.get(child_path)),
            )


def _dig(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings (top wins); lists and scalars are replaced, as SageMaker does."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _layer_paths(env: Mapping[str, str]) -> list[tuple[Path | str, bool]]:
    """The files to read, lowest precedence first; ``True`` marks a file that must exist.

    SageMaker's file of each rank comes just below ours, so a stepflow file refines what a
    SageMaker one says; an ``s3://`` location (SageMaker allows them) stays a string.
    """
    layers: list[tuple[Path | str, bool]] = []
    for var, default in ((ENV_SAGEMAKER_ADMIN_CONFIG, sagemaker_admin_config_path()),
                         (ENV_ADMIN_CONFIG, ADMIN_CONFIG_PATH),
                         (ENV_SAGEMAKER_USER_CONFIG, sagemaker_user_config_path()),
                         (ENV_USER_CONFIG, user_config_path())):
        if var in env:  # set to "" to skip the layer
            if env[var]:
                value = env[var]
                layers.append((value if value.startswith("s3://") else Path(value), True))
        else:
            layers.append((default, False))
    if env.get(ENV_CONFIG):
        layers.append((Path(env[ENV_CONFIG]), True))
    return layers


def load_config(env: Mapping[str, str] = os.environ) -> StepflowConfig:
    """Read the configuration files and the environment; raise ConfigurationError on any mistake."""
    merged: dict[str, Any] = {}
    files: list[Path | str] = []
    origins: dict[str, str] = {}
    for path, required in _layer_paths(env):
        if not required and not (isinstance(path, Path) and path.is_file()):
            continue
        data, lines = _read(path)
        _validate(data, _SCHEMA, (), path, lines)
        merged = _merge(merged, data)
        files.append(path)
        for name in (_dig(data, _RF) or {}):
            origins[f"remote_function.{name}"] = str(path)
        for section, keys in (("pipeline", ("SageMaker", "Pipeline")), ("stepflow", ("Stepflow",)),
                              ("session", _SESSION)):
            for name in (_dig(data, keys) or {}):
                origins[f"{section}.{name}"] = str(path)

    remote_function = copy.deepcopy(_dig(merged, _RF) or {})
    for var, name in _ENV_REMOTE_FUNCTION.items():
        if env.get(var):
            remote_function[name] = _env_value(var, env[var], name)
            origins[f"remote_function.{name}"] = f"env {var}"

    s3_root_uri, root_origin = _root_uri(env, merged, remote_function, origins)
    remote_function.pop("S3RootUri", None)
    origins.pop("remote_function.S3RootUri", None)
    try:
        open_store(s3_root_uri)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc.message} (s3_root_uri from {root_origin})") from exc

    endpoint = env.get(ENV_ENDPOINT) or _dig(merged, ("Stepflow", "S3EndpointUrl")) or None
    origins["s3_endpoint_url"] = (
        f"env {ENV_ENDPOINT}" if env.get(ENV_ENDPOINT)
        else origins.get("stepflow.S3EndpointUrl", "default")
    )
    origins["s3_root_uri"] = root_origin
    integrity_key = _integrity_key(env, merged, origins)
    backend = env.get(ENV_BACKEND) or _dig(merged, ("Stepflow", "Backend")) or "local"
    origins["backend"] = (f"env {ENV_BACKEND}" if env.get(ENV_BACKEND)
                          else origins.get("stepflow.Backend", "default"))

    return StepflowConfig(
        s3_root_uri=s3_root_uri,
        s3_endpoint_url=endpoint,
        integrity_key=integrity_key,
        remote_function=remote_function,
        pipeline=copy.deepcopy(_dig(merged, ("SageMaker", "Pipeline")) or {}),
        session=copy.deepcopy(_dig(merged, _SESSION) or {}),
        files=tuple(files),
        origins=origins,
        backend=backend,
    )


def _env_value(var: str, raw: str, name: str) -> Any:
    if _REMOTE_FUNCTION[name] is not _is_bool:
        return raw
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ConfigurationError(f"{var}={raw!r} is not a boolean; use true or false.")


def _root_uri(env: Mapping[str, str], merged: Mapping[str, Any],
              remote_function: Mapping[str, Any], origins: Mapping[str, str]) -> tuple[str, str]:
    if env.get(ENV_ROOT_URI):
        return env[ENV_ROOT_URI], f"env {ENV_ROOT_URI}"
    if remote_function.get("S3RootUri"):
        return remote_function["S3RootUri"], origins["remote_function.S3RootUri"]
    bucket = _dig(merged, _SESSION + ("DefaultS3Bucket",))
    if bucket:
        prefix = (_dig(merged, _SESSION + ("DefaultS3ObjectKeyPrefix",)) or "").strip("/")
        uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return uri, origins["session.DefaultS3Bucket"]
    return default_s3_root_uri(), "default"


def _integrity_key(env: Mapping[str, str], merged: Mapping[str, Any],
                   origins: dict[str, str]) -> bytes | None:
    if env.get(ENV_KEY) and env.get(ENV_KEY_FILE):
        raise ConfigurationError(
            f"Both {ENV_KEY} and {ENV_KEY_FILE} are set; set only one of them."
        )
    if env.get(ENV_KEY):
        origins["integrity_key"] = f"env {ENV_KEY}"
        return parse_integrity_key(env[ENV_KEY], f"env {ENV_KEY}")
    key_file, origin = env.get(ENV_KEY_FILE), f"env {ENV_KEY_FILE}"
    if not key_file:
        key_file = _dig(merged, ("Stepflow", "IntegrityKeyFile"))
        origin = f"Stepflow.IntegrityKeyFile in {origins.get('stepflow.IntegrityKeyFile')}"
    if not key_file:
        return None
    try:
        text = Path(key_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"Cannot read the integrity key file {key_file} (from {origin}): "
            f"{getattr(exc, 'strerror', None) or exc}. Fix the path or its permissions."
        ) from exc
    origins["integrity_key"] = origin
    return parse_integrity_key(text, f"{key_file} (from {origin})")

