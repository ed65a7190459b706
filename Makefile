# ECG workbench. `make run` serves the app; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# chromium: browser tests; gcc-avr..libsimavr-dev: compile the Arduino sketch and run it on an
# emulated ATmega328P (tests/test_protocol.py); redis-server: the Redis session store's tests.
DEBIAN_PACKAGES := chromium chromium-driver gcc-avr avr-libc arduino-core-avr libsimavr-dev \
	redis-server
export KERAS_BACKEND := jax

.PHONY: install run test test-fast bench lint debian-packages clean

install: $(STAMP)

# Reinstall only when the project's dependencies change, so a second `make install` is instant.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The browser tests drive Debian's chromium (never `playwright install`: it downloads a browser).
debian-packages:
	@if ! dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1; then \
		echo "installing Debian packages: $(DEBIAN_PACKAGES)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); \
	fi

run: install
	$(BIN)/ecg serve --host 127.0.0.1 --port 8050

test: install debian-packages
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: install debian-packages
	@mkdir -p bench/results
	$(BIN)/python bench/run_all.py

lint: install
	$(BIN)/ruff check ecgcore dashboard training acquisition tests bench

clean:
	rm -rf $(VENV) .cache .pytest_cache
