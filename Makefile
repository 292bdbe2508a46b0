# Entry points. `make run` and `make test` do all set-up on a fresh Debian machine.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DDTRAIN_WERROR=ON
endif

.PHONY: all bootstrap configure build test test-gpu run clean

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

run: configure
	@cmake --build $(BUILD) -j $(JOBS) --target dtrain
	@$(BUILD)/dtrain train --config examples/vit_fashion_mnist.ini

clean:
	rm -rf $(BUILD)
