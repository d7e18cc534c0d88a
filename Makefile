# make demo  - set everything up, then run the sidecar in front of the demo Tina4 app (memory store)
# make test  - set everything up, then run the linters and the whole test suite
# make lint  - ruff and mypy only

.PHONY: setup services lint test demo

setup:
	@bash .ci/setup

services:
	@bash .ci/services

lint: setup
	@bash .ci/lint

test: setup services
	@bash .ci/lint
	@.venv/bin/python -m pytest

demo: setup
	@bash examples/run_demo.sh
