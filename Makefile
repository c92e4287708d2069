# libbioxen / pylua_bioxen_vm_lib. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

GO      ?= go
PYTHON  ?= python3
VENV    ?= .venv
PKG     := python/pylua_bioxen_vm_lib
LIB     := $(PKG)/libbioxen.so
GOFILES := $(shell find core embedded luaproc capi xapi sshsession packages xcpng third_party -name '*.go' -o -name '*.c' -o -name '*.h' -o -name '*.lua' 2>/dev/null) include/bioxen.h go.mod go.sum
# --fair-sched=yes: valgrind runs one thread at a time, and its default
# lock let a thread spinning in a Lua loop take it back again and again, so
# that the Go scheduler's other threads (timers, the collector) starved: a
# CI run hung for 20+ minutes in the test that closes a VM while another
# thread runs a chunk without a timeout.
VALGRIND := valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --suppressions=tests/c/go-runtime.supp --quiet --fair-sched=yes

.PHONY: help build demo demo-xcpng test deps lint test-go test-c test-python test-install bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

ROCKS   := $(PKG)/rocks/manifest
LUAFILES := $(shell find lua -name '*.lua' -o -name '*.rockspec' -o -name '*.sh' 2>/dev/null)

build: $(LIB) $(ROCKS) $(PKG)/catalog bin/xapi-sim ## build libbioxen.so, the local rocks repository and the catalogs into the Python package
$(LIB): $(GOFILES)
	$(GO) build -trimpath -buildmode=c-shared -o build/libbioxen.so ./capi
	cp build/libbioxen.so $(LIB)

# The shipped LuaRocks repository: rocks built offline from the rockspecs in
# lua/ (needs luarocks; without it the package works but installs nothing).
$(ROCKS): $(LUAFILES)
	@if command -v luarocks >/dev/null 2>&1; then \
		rm -rf $(PKG)/rocks && bash lua/build_repo.sh $(PKG)/rocks; \
	else echo "luarocks not installed: skipping the local rocks repository"; fi

bin/xapi-sim: $(shell find xapi cmd/xapi-sim -name '*.go' 2>/dev/null) go.mod
	$(GO) build -trimpath -o $@ ./cmd/xapi-sim

$(PKG)/catalog: $(wildcard lua/catalog/*.json)
	rm -rf $@ && mkdir -p $@ && cp lua/catalog/*.json $@/

demo: build ## run the demo on the embedded engine (needs only Go and Python)
	PYTHONPATH=python $(PYTHON) examples/demo.py

demo-xcpng: build ## run the spec's XCP-ng example against the XAPI simulator (needs openssh-server, lua5.4)
	PYTHONPATH=python $(PYTHON) examples/demo_xcpng.py

deps: ## install what the tests need: Debian packages (as root) and a venv with pytest
	bash scripts/setup-test-deps.sh $(VENV)

test: deps build lint test-go test-c test-python test-install ## set up and run every test

lint: ## gofmt, go vet, ruff, mypy (the Python package)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	$(VENV)/bin/ruff check python tests/python bench examples
	$(VENV)/bin/ruff format --check python tests/python bench examples
	$(VENV)/bin/mypy python/pylua_bioxen_vm_lib

test-go: ## Go tests with the race detector, and the timing tests without it
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run 'AtTheDeadline' ./tests/go/

test-c: build ## the C host test under valgrind (fails on leaks and invalid accesses), and README's C example
	gcc -O1 -g -Wall -Wextra -Werror -Iinclude tests/c/capi_test.c -L$(PKG) -lbioxen -lpthread \
		-Wl,-rpath,$(CURDIR)/$(PKG) -o tests/c/capi_test
	$(VALGRIND) tests/c/capi_test lua5.4
	bash tests/c/readme_example.sh

test-python: build ## pytest
	PYTHONPATH=python $(VENV)/bin/python -m pytest -q tests/python

test-install: ## `pip install ./python` into a scratch venv and use the installed package
	rm -rf build/install-venv && $(PYTHON) -m venv build/install-venv
	build/install-venv/bin/pip install -q --disable-pip-version-check ./python
	cd /tmp && $(CURDIR)/build/install-venv/bin/python -c "import pylua_bioxen_vm_lib as m, os; \
		assert os.path.dirname(m._ffi.LIB_PATH) == os.path.dirname(m.__file__), m._ffi.LIB_PATH; \
		assert m.create_vm('installed').execute_string('return 2 + 2')['stdout'] == '4'; print('installed package works')"

bench: build ## benchmarks: ratios against the baselines, measured in the same run
	$(GO) test -run '^$$' -bench . -benchmem ./tests/go/ ./luaproc/
	PYTHONPATH=python $(PYTHON) bench/bench_exec.py
	PYTHONPATH=python $(PYTHON) bench/bench_session.py
	PYTHONPATH=python $(PYTHON) bench/bench_xcpng.py
	PYTHONPATH=python $(PYTHON) bench/bench_packages.py
	PYTHONPATH=python $(PYTHON) bench/bench_limits.py
	PYTHONPATH=python $(PYTHON) bench/bench_suite.py
	PYTHONPATH=python $(PYTHON) bench/bench_bio_native.py

clean: ## remove build outputs
	rm -rf build bin $(LIB) $(PKG)/libbioxen.h $(PKG)/rocks $(PKG)/catalog tests/c/capi_test
