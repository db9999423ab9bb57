# Both targets install what they need first (scripts/setup.sh is idempotent). Run as root:
# the data path loads BPF programs and the tests build network namespaces.
PYTHON := .venv/bin/python

.PHONY: setup demo test test-fast bench manifests vm-test
setup:
	bash scripts/setup.sh

demo: setup
	$(PYTHON) scripts/demo.py

# Every tier: pure, packet and network first, then the VM tier.
test: setup
	$(PYTHON) -m pytest -ra
	$(MAKE) --no-print-directory vm-test

# VM tier alone: the gateway in a qemu VM (Debian's kernel, virtio-net, native XDP); see vm-tests/.
vm-test: setup
	bash vm-tests/setup.sh
	$(PYTHON) -m pytest -ra vm-tests

# Benchmarks (about half an hour): writes docs/benchmarks.md, docs/bench/results.json and docs/bench/*.png.
bench: setup
	$(PYTHON) -m bench.run

# Pure tier only (no root needed once set up).
test-fast:
	$(PYTHON) -m pytest -ra tests/unit

# deploy/manifests/xdp-gateway.yaml from the Helm chart (Helm's library, offline).
manifests: setup
	$(PYTHON) scripts/render_manifests.py
