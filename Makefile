# Each target sets up what it needs first (scripts/bootstrap.sh is
# idempotent and quick when nothing changed).
PY := .venv/bin/python

.PHONY: bootstrap demo test bench clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(PY) -m aiodocknet.cli demo

test: bootstrap
	$(PY) -m pytest -q -rs

bench: bootstrap
	$(PY) -m bench.run

clean:
	rm -rf build/cffi .venv aiodocknet/_native*.so aiodocknet/_fcpath*.so aiodocknet/_native.c *.egg-info
