# stepflow: the entry points. `make help` lists them.
SHELL := bash
PYTHON ?= .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help test testenv venv demo

help:
	@echo "make demo      run the main job on the embedded default (placeholder for now)"
	@echo "make test      install the test environment and the venv, then run the whole suite"
	@echo "make testenv   build/install kube-apiserver, kubectl, etcd, versitygw, helm (cached)"
	@echo "make venv      create/refresh .venv (pip install -e '.[dev]')"
	@echo "               PYTEST_ARGS='-k s3 -x' make test   passes options to pytest"

testenv:
	scripts/testenv install

venv:
	scripts/bootstrap

# The whole suite. pytest's exit code 5 ("no tests collected") is a failure here, with a word.
test: testenv venv
	@rc=0; $(PYTHON) -m pytest --durations=15 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: that is a failure" >&2; fi; \
	exit $$rc

# Placeholder: the lead fills this in once the local backend runs pipelines end to end.
demo: venv
	@echo "make demo will: compile the example pipeline under examples/, publish it to an"
	@echo "embedded file:// store, run it on the local backend and print each step's status."
	@echo "(not implemented yet)"
