# Conveniences around the Go toolchain. The README's commands work without
# make; these targets need root (network namespaces, TUN devices).

BIN ?= $(CURDIR)/.bin
# Flags for `wanlab up`, e.g. make lab-up LAB="-internet-rtt 400ms -backbone-loss 0.1"
LAB ?=

.PHONY: lab-up lab-down wanlab

wanlab:
	go build -o $(BIN)/wanlab ./bench/cmd/wanlab

# The WAN lab: client, PoP, region and endpoint namespaces (aelab-lab-*),
# an emulated internet path client ↔ endpoint, an access link client ↔ PoP
# and an emulated backbone PoP ↔ region. See internal/wanlab.
lab-up: wanlab
	$(BIN)/wanlab up $(LAB)

# Stops the lab and removes every aelab-lab-* namespace, also after a crash.
lab-down: wanlab
	$(BIN)/wanlab down

# The WAN matrix of BENCHMARKS.md (root; about an hour for the full matrix).
# Pass flags with WAN, e.g. make bench-wan WAN="-rtt 200ms -runs 3".
WAN ?=
.PHONY: bench-wan
bench-wan:
	bench/wan.sh $(WAN)

# Static release binaries for linux/amd64 and linux/arm64 in dist/, with the
# version (git describe, or VERSION=...) stamped in: `anyedge version`.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DIST ?= $(CURDIR)/dist
.PHONY: dist
dist:
	@mkdir -p $(DIST)
	@for arch in amd64 arm64; do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch go build -trimpath \
			-ldflags "-s -w -X main.version=$(VERSION)" \
			-o $(DIST)/anyedge-linux-$$arch ./cmd/anyedge || exit 1; \
		echo "$(DIST)/anyedge-linux-$$arch ($(VERSION))"; \
	done
