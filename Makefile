# Each target sets up what it needs first (scripts/bootstrap.sh is
# idempotent and quick when nothing changed).
PY := .venv/bin/python

.PHONY: bootstrap demo test bench fuzz clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(PY) -m aiodocknet.cli demo

test: bootstrap
	$(PY) -m pytest -q -rs

bench: bootstrap
	$(PY) -m bench.run

# Each fuzz harness in turn for FUZZ_SECONDS (FUZZ_HARNESSES: some of
# stack, framering, control); prints executions/s and coverage of each.
FUZZ_SECONDS ?= 600
FUZZ_HARNESSES ?=
fuzz: bootstrap
	$(PY) fuzz/run.py --seconds $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

clean:
	rm -rf build/cffi build/dnbench .venv aiodocknet/native/_lib*.so aiodocknet/native/_fcpath*.so aiodocknet/native/_lib.c \
		aiodocknet/native/dn_xdp_filter.o \
		bench/_dnbench*.so *.egg-info
