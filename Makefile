# make demo  - set everything up, then run the sidecar in front of the demo Tina4 app (memory store)
# make test  - set everything up, then run the linters and the whole test suite
# make lint  - ruff and mypy only
# make lock  - write uv.lock after an edit of pyproject.toml (then make test and commit it)
# make upgrade - every locked dependency to the newest version pyproject.toml allows

.PHONY: setup services lint test demo lock upgrade

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

lock:
	@bash .ci/lock $(ARGS)

upgrade:
	@bash .ci/lock --upgrade
