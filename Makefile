# The two commands of the README, and their parts.
#   make demo   install, build, run the main job on the embedded default
#               (make demo DEMO_ARGS=--keep leaves stratad and the agents running)
#   make test   install, build (normal and ASan+UBSan), run every test
JOBS ?= $(shell nproc)
# ccache keys on paths relative to the checkout, so clones in other directories share the cache.
export CCACHE_BASEDIR := $(CURDIR)

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
	scripts/demo.sh $(DEMO_ARGS)

# virtlogd and the system libvirtd run for the real-QEMU tests, a one-node Pacemaker cluster for
# the Pacemaker membership test (each started only if nothing of the kind was running, stopped
# afterwards only then; without root those tests skip, saying why).
test: build build-asan
	scripts/qemu-env.sh start
	scripts/pacemaker-env.sh start || { scripts/qemu-env.sh stop; exit 1; }
	rc=0; ctest --preset default -j $(JOBS) || rc=$$?; \
	  ctest --preset asan -j $(JOBS) || rc=$$?; \
	  scripts/pacemaker-env.sh stop; scripts/qemu-env.sh stop; exit $$rc

bench: build
	build/default/bin/graph_bench
	build/default/bin/api_bench
	build/default/bin/event_bench
	build/default/bin/event_latency_bench
	build/default/bin/qemu_backup_bench
	build/default/bin/cluster_backup_bench

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf build
