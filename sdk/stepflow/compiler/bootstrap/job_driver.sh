#!/bin/bash
# stepflow job driver: the container entrypoint of every @step function step.
# It receives the step's ContainerArguments as "$@". The image needs only Python and pip:
# stepflow is installed at the compiling client's version (--client_stepflow_version)
# when it is missing or differs, then the step runtime takes over. The compiler publishes
# that very version as a wheel beside this script (stepflow_runtime/payload.pkl, with its
# metadata.json); it is installed from there, after its digest is checked the way the
# runtime checks every artifact (HMAC-SHA256 with STEPFLOW_INTEGRITY_KEY[_FILE], else
# SHA-256), so a job needs no package index that has stepflow.
#   STEPFLOW_PYTHON    interpreter to use (default: python3, else python)
#   STEPFLOW_PIP_SPEC  what to pip-install instead (the published wheel, else stepflow==<client version>)
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
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

cache_dir="${SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY:-/opt/ml/cache}"
if mkdir -p "$cache_dir/stepflow/pip" 2>/dev/null; then
  export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$cache_dir/stepflow/pip}"
fi

# Checks the published wheel and prints the path of a verified copy named as pip wants it.
verify_wheel='
import hashlib, hmac, json, os, sys, tempfile
folder = sys.argv[1]
meta = json.load(open(os.path.join(folder, "metadata.json")))
payload = open(os.path.join(folder, "payload.pkl"), "rb").read()
key = os.environ.get("STEPFLOW_INTEGRITY_KEY")
if not key and os.environ.get("STEPFLOW_INTEGRITY_KEY_FILE"):
    key = open(os.environ["STEPFLOW_INTEGRITY_KEY_FILE"]).read()
if key:
    field, digest = "hmac_sha256", hmac.new(bytes.fromhex(key.strip()), payload, hashlib.sha256).hexdigest()
else:
    field, digest = "sha256_hash", hashlib.sha256(payload).hexdigest()
if field not in meta or not hmac.compare_digest(meta[field], digest):
    sys.exit("stepflow job driver: integrity check failed for the published stepflow wheel "
             "(" + ("no " + field + " recorded" if field not in meta else field + " mismatch")
             + "): republish the pipeline, and give the job the key that signed it")
name = os.path.basename(meta["file_name"])
out = os.path.join(tempfile.mkdtemp(prefix="stepflow-wheel-"), name)
open(out, "wb").write(payload)
print(out)
'

installed="$("$python" -c 'import importlib.metadata as m; print(m.version("stepflow"))' 2>/dev/null || true)"
if [ -z "$installed" ] || { [ -n "$client_version" ] && [ "$installed" != "$client_version" ]; }; then
  if [ -n "${STEPFLOW_PIP_SPEC:-}" ]; then
    spec="$STEPFLOW_PIP_SPEC"
  elif [ -f "$here/stepflow_runtime/payload.pkl" ]; then
    spec="$("$python" -c "$verify_wheel" "$here/stepflow_runtime")"
  elif [ -n "$client_version" ]; then
    spec="stepflow==$client_version"
  else
    spec="stepflow"
  fi
  echo "stepflow job driver: installing $spec (found: ${installed:-none})" >&2
  "$python" -m pip install --quiet --disable-pip-version-check "$spec"
fi

# A training job's container is the step's own: nothing of an operator's lives there, and
# SageMaker's contract has the user's code write /opt/ml as the container's user. So the
# user code keeps this user unless told otherwise (docs/ISOLATION.md).
export STEPFLOW_STEP_UID="${STEPFLOW_STEP_UID:-none}"
exec "$python" -m stepflow.runtime "$@"
