# The two commands of the README, and their parts.
#   make demo   install, build, run the main job on the embedded default
#   make test   install, build (normal and ASan+UBSan), run every test
JOBS ?= $(shell nproc)

.PHONY: all deps build build-asan demo test test-default test-asan bench format clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake --preset default
	cmake --build --preset default -j $(JOBS)

build-asan: deps
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)

demo: build
	scripts/demo.sh

test: build build-asan
	ctest --preset default -j $(JOBS)
	ctest --preset asan -j $(JOBS)

bench: build
	build/default/bench/graph_bench

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf build
