# Makefile - thin wrapper over CMake: `make demo`, `make test`, `make build`.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all build deps demo test asan goldens fuzz format clean FORCE

all: build

# tools/install-deps.sh checks each package (dpkg-query, well under a second) and installs only
# what is missing, so it runs on every build.
$(DEPS_STAMP): FORCE
	@./tools/install-deps.sh
	@mkdir -p $(BUILD) && touch $@

FORCE:

deps: $(DEPS_STAMP)

build: $(DEPS_STAMP)
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

# Trains 3DGS on the bundled POV-Ray scene (assets/scene, see its SOURCE.md) on the default
# device; DEMO_ITERS steps take a few minutes on a 2-core CPU. Prints where the PLY, the
# renders and the held-out PSNR are.
DEMO_ITERS ?= 3000
DEMO_OUT ?= $(BUILD)/demo-splat
demo: build
	./$(BUILD)/polyak splat train --data assets/scene --out $(DEMO_OUT) --iters $(DEMO_ITERS) \
	  --init-points 5000 --seed 1

test: build
	cd $(BUILD) && POLYAK_VALIDATE=1 ctest --output-on-failure -j $(JOBS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: $(DEPS_STAMP)
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPOLYAK_SANITIZE=ON
	cmake --build build-asan -j $(JOBS)
	cd build-asan && POLYAK_VALIDATE=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  ctest --output-on-failure -j $(JOBS)

# Regenerates the PyTorch golden files (needs python3-torch; the files are committed).
goldens: $(DEPS_STAMP)
	/usr/bin/python3 tests/golden/make_goldens.py
	/usr/bin/python3 tests/golden/splat/make_golden.py
	/usr/bin/python3 tests/golden/ctp_losses.py

# libFuzzer harnesses (tests/fuzz) for the readers, FUZZ_SECONDS each (default 60).
FUZZ_SECONDS ?= 60
fuzz: $(DEPS_STAMP)
	./tools/fuzz.sh $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan
