#!/bin/bash
# stepflow job driver: the container entrypoint of every @step function step.
# It receives the step's ContainerArguments as "$@". The image needs only Python and pip:
# stepflow is installed at the compiling client's version (--client_stepflow_version)
# when it is missing or differs, then the step runtime takes over.
#   STEPFLOW_PYTHON    interpreter to use (default: python3, else python)
#   STEPFLOW_PIP_SPEC  what to pip-install instead of stepflow==<client version>
set -eu

client_version=""
previous=""
for argument in "$@"; do
  if [ "$previous" = "--client_stepflow_version" ]; then
    client_version="$argument"
  fi
  previous="$argument"
done

python="${STEPFLOW_PYTHON:-$(command -v python3 || command -v python)}"

cache_dir="${SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY:-/opt/ml/cache}"
if mkdir -p "$cache_dir/stepflow/pip" 2>/dev/null; then
  export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$cache_dir/stepflow/pip}"
fi

installed="$("$python" -c 'import importlib.metadata as m; print(m.version("stepflow"))' 2>/dev/null || true)"
if [ -z "$installed" ] || { [ -n "$client_version" ] && [ "$installed" != "$client_version" ]; }; then
  if [ -n "$client_version" ]; then
    spec="${STEPFLOW_PIP_SPEC:-stepflow==$client_version}"
  else
    spec="${STEPFLOW_PIP_SPEC:-stepflow}"
  fi
  echo "stepflow job driver: installing $spec (found: ${installed:-none})" >&2
  "$python" -m pip install --quiet --disable-pip-version-check "$spec"
fi

exec "$python" -m stepflow.runtime "$@"
