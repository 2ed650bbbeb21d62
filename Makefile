# stepflow: the entry points. `make help` lists them.
SHELL := bash
PYTHON ?= .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help test testenv venv demo lint testenv-cluster e2e-cluster demo-cluster demo-cluster-down

help:
	@echo "make demo      install stepflow (runtime dependencies only) and run the example with the embedded"
	@echo "               GitOps loop (stepflow up --once examples/manifests); ends with how to look further"
	@echo "make test      install the test environment and the venv, lint, then run the whole suite (cluster suite too)"
	@echo "make testenv   build/install kube-apiserver, kubectl, etcd, versitygw, helm (cached)"
	@echo "make venv      create/refresh .venv (pip install -e '.[dev,lint]')"
	@echo "make lint      ruff, mypy and the import-layer contracts (part of make test)"
	@echo "make e2e       the image and chart in a kind cluster (needs docker, kind; see e2e/README.md)"
	@echo "make e2e-cluster   the same scenarios on real pods in a local single-node cluster (root; no docker)"
	@echo "make demo-cluster  the churn example on real pods: cluster, S3, chart, Pipeline (make demo-cluster-down)"
	@echo "               PYTEST_ARGS='-k s3 -x' make test   passes options to pytest"

testenv:
	scripts/testenv install

venv:
	scripts/bootstrap

# Lint first: a layering violation or a type error fails the run before the slow tests.
lint: venv
	.venv/bin/ruff check sdk operator tests bench e2e
	.venv/bin/mypy
	.venv/bin/lint-imports

# The whole suite: tests/ (real API server, S3 and git on loopback), then the cluster suite
# on real pods (e2e/realpods: the image and chart in a local single-node Kubernetes; root).
# Two pytest sessions, because the cluster suite has its own conftest (the kind suite's
# fixture names re-bound). pytest's exit code 5 ("no tests collected") is a failure here.
test: testenv testenv-cluster venv lint
	@rc=0; $(PYTHON) -m pytest --durations=15 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: that is a failure" >&2; fi; \
	[ $$rc -ne 0 ] || $(PYTHON) -m pytest e2e/realpods --durations=10 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: the cluster suite collected no tests: that is a failure" >&2; fi; \
	exit $$rc

# The main job on the embedded default: `stepflow up --once` on the example (no cluster, no
# cloud); the venv gets stepflow's runtime dependencies only (scripts/bootstrap --demo).
demo:
	scripts/demo

# The kind suite: builds operator/Dockerfile, installs charts/stepflow in a new kind cluster.
# Needs docker and kind (kubectl and helm from the testenv cache or PATH); skips without
# them, fails without them when CI is set. Not part of `make test` (testpaths = tests/).
.PHONY: e2e
e2e: venv
	$(PYTHON) -m pytest e2e --ignore=e2e/realpods $(PYTEST_ARGS)

# The real-pods cluster: kubelet & co. (Go), Debian's containerd/runc/CNI, and the images.
testenv-cluster:
	scripts/testenv install cluster

# The kind suite's scenarios (and more) on real pods in the local single-node cluster
# (tests/testenv/localcluster); see docs/TESTING.md, "Real pods". Needs root, no docker.
e2e-cluster: testenv testenv-cluster venv
	$(PYTHON) -m pytest e2e/realpods --durations=15 $(PYTEST_ARGS)

# The churn example on real pods: cluster up, S3 up, the chart, the Pipeline; prints
# kubectl get pipelines / pipelineexecutions and what to look at next.
demo-cluster: testenv testenv-cluster venv
	$(PYTHON) -m e2e.realpods.demo up

demo-cluster-down: venv
	$(PYTHON) -m e2e.realpods.demo down
