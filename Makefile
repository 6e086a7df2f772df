# The commands that matter. `make up`: the stack with its demo bot; `make test`: every test.
.PHONY: up down test lint bench deps images

deps:
	scripts/install-deps

test: deps
	.venv/bin/python -m pytest

lint: deps
	.venv/bin/ruff check control kit tests benchmarks
	.venv/bin/ruff format --check control kit tests benchmarks
	.venv/bin/mypy

bench: deps
	.venv/bin/python -m benchmarks

# The stack of docker-compose.yml (docs/stack.md): `up` = images + stack + one emulated call.
images: deps
	scripts/stack images

up: deps
	scripts/stack up

down:
	scripts/stack down
