"""Turning pickled argument placeholders back into run-time values
(docs/SAGEMAKER-COMPATIBILITY.md, "Running the function").

The compiler replaced every top-level pipeline variable by a placeholder naming a key of
``--property_references``; the orchestrator resolved those keys to strings. Here each
placeholder becomes a typed value: parameters by their declared type (booleans parsed
leniently, since ``str(True)`` is ``"True"``), upstream return values by loading the
upstream step's pickled result and applying the ``[]`` path the user wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stepflow.errors import StepflowError
from stepflow.workflow import placeholders as ph

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class ArgumentError(StepflowError):
    """A step argument could not be resolved from the execution's values."""

    reason = "ArgumentResolutionFailed"


def parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ArgumentError(f"Boolean parameter {name!r} has value {text!r}; use true or false.")


def _lookup(refs: Mapping[str, str], key: str) -> str:
    try:
        return refs[key]
    except KeyError:
        raise ArgumentError(
            f"The step's arguments refer to {key!r}, but the launcher passed no value for it "
            "in --property_references. Recompile the pipeline with this stepflow version."
        ) from None


def _scalar(value: Any, refs: Mapping[str, str]) -> Any:
    if isinstance(value, ph._ParameterString):
        return _lookup(refs, f"Parameters.{value.name}")
    if isinstance(value, ph._ParameterInteger):
        return int(_lookup(refs, f"Parameters.{value.name}"))
    if isinstance(value, ph._ParameterFloat):
        return float(_lookup(refs, f"Parameters.{value.name}"))
    if isinstance(value, ph._ParameterBoolean):
        return parse_bool(value.name, _lookup(refs, f"Parameters.{value.name}"))
    if isinstance(value, ph._ExecutionVariable):
        return _lookup(refs, f"Execution.{value.name}")
    if isinstance(value, ph._Properties):
        return _lookup(refs, value.path)
    return value


def _index(value: Any, path: tuple[tuple[str, object], ...], upstream: str) -> Any:
    for _op, key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise ArgumentError(
                f"Indexing the return value of step {upstream!r} with [{key!r}] failed: "
                f"{type(exc).__name__}: {exc}. Check what that step returns."
            ) from exc
    return value


def resolve_arguments(args: tuple, kwargs: dict, refs: Mapping[str, str],
                      load_result: Callable[[str], Any]) -> tuple[tuple, dict]:
    """Replace top-level placeholders; upstream results are loaded once each, in parallel."""
    delayed = [v for v in (*args, *kwargs.values()) if isinstance(v, ph._DelayedReturn)]
    uris = sorted({_lookup(refs, d.uri.path) for d in delayed})
    loaded: dict[str, Any] = {}
    if uris:
        with ThreadPoolExecutor(max_workers=min(8, len(uris))) as pool:
            loaded = dict(zip(uris, pool.map(load_result, uris), strict=False))

    def value_of(v: Any) -> Any:
        if isinstance(v, ph._DelayedReturn):
            upstream = v.uri.path.split(".")[1] if v.uri.path.startswith("Steps.") else v.uri.path
            return _index(loaded[_lookup(refs, v.uri.path)], tuple(v.reference_path), upstream)
        return _scalar(v, refs)

    return tuple(value_of(a) for a in args), {k: value_of(v) for k, v in kwargs.items()}
