# Two commands for a fresh machine; both are idempotent and fast the second time.
#   make run   set up, then start the app on http://127.0.0.1:8501 (offline default)
#   make test  set up (with test-only packages), then lint and run the whole suite
#   make screenshot  README's picture (assets/pareto.png): a real sweep on the cached trained baseline
.PHONY: run test setup lint screenshot

VENV := .venv
PY := $(VENV)/bin/python

run:
	./scripts/setup.sh
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1 --server.port 8501 --server.headless true

test:
	./scripts/setup.sh --test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint:
	$(VENV)/bin/ruff check .

screenshot:
	./scripts/setup.sh --test
	$(PY) -m scripts.screenshot
