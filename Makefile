# Entry points. `make run` and `make test` do all set-up on a fresh Debian machine.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DDTRAIN_WERROR=ON
endif

.PHONY: all bootstrap configure build test test-gpu test-sanitize lint format format-check run clean

all: build

bootstrap:
	@scripts/bootstrap

configure: bootstrap
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

# The CUDA parity suite, model and DDP tests on a GPU (they skip with a reason where there is none).
test-gpu: build
	@cd $(BUILD) && ctest --output-on-failure -R 'Cuda|GPU|nccl' --timeout 900

# The whole suite (MPI tests included) built with AddressSanitizer + UndefinedBehaviorSanitizer, in its
# own build dir, CPU only and without the benchmarks. Its run-time options, leak suppressions for Open
# MPI among them, come from tests/sanitize/sanitize_env.cmake, which CTest reads before any test.
SANITIZE_BUILD ?= build-asan
test-sanitize: bootstrap
	@cmake -S . -B $(SANITIZE_BUILD) -G Ninja $(CMAKE_FLAGS) -DDTRAIN_SANITIZE=ON -DDTRAIN_CUDA=OFF \
	  -DDTRAIN_BENCH=OFF >/dev/null
	@cmake --build $(SANITIZE_BUILD) -j $(JOBS)
	@cd $(SANITIZE_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

# clang-tidy with .clang-tidy over every C++ source of the libraries (the build's compile database; CUDA
# files aside), then clang-format's check; both must be clean. `make format` applies .clang-format.
LINT_SOURCES = '^$(CURDIR)/(core|distributed|models|launch|bench)/.*\.cpp$$'
lint: bootstrap
	@scripts/bootstrap --lint
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
	@run-clang-tidy -quiet -p $(BUILD) -j $(JOBS) $(LINT_SOURCES) >$(BUILD)/lint.log 2>&1 || \
	  { grep -E 'error:|warning:' $(BUILD)/lint.log | sort -u; echo "lint: clang-tidy found the above ($(BUILD)/lint.log)"; exit 1; }
	@$(MAKE) --no-print-directory format-check
	@echo "lint: clean"

format:
	@git ls-files '*.cpp' '*.h' '*.cu' '*.cuh' | xargs clang-format -i

format-check:
	@git ls-files '*.cpp' '*.h' '*.cu' '*.cuh' | xargs clang-format --dry-run -Werror

run: configure
	@cmake --build $(BUILD) -j $(JOBS) --target dtrain
	@$(BUILD)/dtrain train --config examples/vit_fashion_mnist.ini

clean:
	rm -rf $(BUILD) $(SANITIZE_BUILD)
