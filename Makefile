# The two commands: `make run` (embedded stack) and `make test` (every test).
# Both install what is missing first (scripts/setup.sh, idempotent).
VENV := .venv/bin

.PHONY: setup run test down status bench lint

setup:
	@scripts/setup.sh

run: setup
	$(VENV)/flows up

test: setup
	$(VENV)/pytest

down:
	$(VENV)/flows down

status:
	$(VENV)/flows status

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(VENV)/python $$b || exit 1; done

lint: setup
	$(VENV)/ruff check workers tests bench scripts
