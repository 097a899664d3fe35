# cardwire — the two commands a newcomer needs are `make run` and `make test`.
GO       ?= go
PKG      ?= ./...
T        ?= .
FUZZTIME ?= 10s
BIN      := bin
# The version is the CHANGELOG's newest entry (## 0.6.0 or ## [0.6.0]); the
# commit is the checkout's (-dirty with uncommitted changes). Both are
# stamped into every binary (-version) and VERSION tags the images.
VERSION  ?= $(or $(shell sed -n 's/^## \[\{0,1\}\([0-9][^] ]*\).*/\1/p' CHANGELOG.md 2>/dev/null | head -n 1),dev)
COMMIT   ?= $(or $(shell git describe --always --dirty --abbrev=12 --exclude='*' 2>/dev/null),unknown)
IMAGE_PREFIX ?= ghcr.io/cardwire
# make image: IMAGE_BASE=local builds offline on scripts/base-image.sh's base
# (default: .ko.yaml's distroless/static nonroot), IMAGE_PLATFORM=linux/arm64,
# IMAGE_PUSH=true pushes; make image-docker passes DOCKER_BUILD_FLAGS on.
IMAGE_BASE     ?=
IMAGE_PLATFORM ?=
IMAGE_PUSH     ?= false
DOCKER_BUILD_FLAGS ?=

.PHONY: image build test test-only lint bench fuzz run demo demo-outage send register tail outcomes clean

## build: compile every binary into ./bin, stamped with VERSION and COMMIT (the operator CLI bin/cardwire, and the NATS server for make run)
build:
	$(GO) build -ldflags "-X github.com/cardwire/cardwire/internal/lifecycle.version=$(VERSION) -X github.com/cardwire/cardwire/internal/lifecycle.commit=$(COMMIT)" -o $(BIN)/ ./cmd/...
	$(GO) build -o $(BIN)/nats-server github.com/nats-io/nats-server/v2

## image: both images with ko, no Docker engine needed, reproducibly (same sources, same digests): $(IMAGE_PREFIX)/webhook-receiver:$(VERSION) and …/worker:$(VERSION), each with the operator CLI /cardwire and an SPDX SBOM, as OCI layouts and docker-load tarballs under .cache/images; IMAGE_BASE=local builds offline, IMAGE_PUSH=true pushes (needs ko and crane; scripts/image.sh lists its variables)
image:
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' IMAGE_PREFIX='$(IMAGE_PREFIX)' IMAGE_BASE='$(IMAGE_BASE)' IMAGE_PLATFORM='$(IMAGE_PLATFORM)' IMAGE_PUSH='$(IMAGE_PUSH)' ./scripts/image.sh

## image-docker: the same two images from the Dockerfile with a Docker engine (DOCKER_BUILD_FLAGS=--network=host and the like are passed on)
.PHONY: image-docker
image-docker:
	@docker info >/dev/null 2>&1 || { echo "make image-docker: no Docker engine is reachable (docker info failed); start one, or use make image (ko, no engine needed)"; exit 1; }
	for b in webhook-receiver worker; do \
	  docker build $(DOCKER_BUILD_FLAGS) --build-arg BINARY=$$b --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE_PREFIX)/$$b:$(VERSION) . || exit 1; \
	done

## base-image: the local base for offline builds (CA certificates and user nonroot 65532, made with crane) as an OCI layout in .cache/base; prints its digest
.PHONY: base-image
base-image:
	./scripts/base-image.sh

## test-image: build both images offline on the local base (twice: same digests), load them into podman and run each read-only as uid 65532 against a real nats-server: -version, /healthz and /readyz, a signed webhook stored through the receiver, SIGTERM exits 0 within SHUTDOWN_TIMEOUT (needs podman, runc, ko, crane; ≈ 10 s warm, 2½ min with a cold Go build cache)
.PHONY: test-image
test-image: build
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' IMAGE_PREFIX='$(IMAGE_PREFIX)' ./scripts/test-image.sh

## test: lint, then every test with the race detector (fuzz seeds included); PKG= and T= narrow it
test: lint test-only

test-only:
	$(GO) test -race -count=1 -run '$(T)' $(PKG)

## test-k8s: apply deploy/k8s (namespace, dev, production, nats, existing-nats) server-side with strict validation and no warnings to a real kube-apiserver v1.37.2 + etcd 3.7.0 in restricted namespaces, roll it out on 3 kwok nodes, drain one (PDBs hold) and restart every Deployment; the first run builds the servers, kwok and controller-gen from tools/k8s into .cache/k8s (≈ 11–13 min on 2 cores), later runs take under a minute (scripts/test-k8s.sh lists its variables)
.PHONY: test-k8s
test-k8s:
	./scripts/test-k8s.sh

## k8s-servers: only build what test-k8s runs (etcd, the Kubernetes servers, kubectl, kwok, controller-gen) into .cache/k8s/bin
.PHONY: k8s-servers
k8s-servers:
	./scripts/test-k8s.sh build

## lint: formatting, vet, staticcheck and the package import rules
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKG)
	$(GO) tool staticcheck $(PKG)
	./scripts/check-imports.sh

## bench: Go benchmarks (receiver verify+parse and handler, worker settle rate, webhook-to-outcome latency); T= picks some
bench:
	$(GO) test -run '^$$' -bench '$(T)' -benchmem $(PKG)

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseEnvelope$$' -fuzztime $(FUZZTIME) ./internal/events
	$(GO) test -run '^$$' -fuzz '^FuzzEventSubject$$' -fuzztime $(FUZZTIME) ./internal/streams
	$(GO) test -run '^$$' -fuzz '^FuzzParseEvent$$' -fuzztime $(FUZZTIME) ./internal/encoding

## test-alerts: the production alerts checked with Prometheus itself: promtool check rules --lint=all and promtool test rules (deploy/k8s/alerts/tests.yml: each alert fires, none when healthy), then a real prometheus scrapes a receiver and a worker on loopback and reads up, cardwire_ series and its rules through its API (needs promtool and prometheus: apt-get install prometheus; ≈ 10 s)
.PHONY: test-alerts
test-alerts: build
	./scripts/test-alerts.sh

## test-run: make run for real, the way a newcomer starts it: waits until the worker is ready, runs make demo in both workspaces, then sends SIGTERM to the stack's whole process group (as timeout and service managers do) and checks that every part, NATS included, has stopped within 20 s and the lock is released (PORT_BASE=27000 by default; ≈ 30 s; scripts/test-run.sh lists its variables)
.PHONY: test-run
test-run: build
	./scripts/test-run.sh

## run: the whole local stack on 127.0.0.1 (NATS with JetStream under ./.data, receiver, Seam simulator, worker; two workspaces from .data/workspaces.json); PORT_BASE=18000 (or NATS_PORT=, RECEIVER_PORT=, …) moves its ports, SEAM=sandbox uses a Seam sandbox instead of the simulator; Ctrl-C stops it (scripts/run.sh lists its variables)
run:
	@./scripts/run.sh check 'make run'
	@$(MAKE) --no-print-directory build
	@./scripts/run.sh

# send, register, tail, demo, demo-outage and outcomes talk to the local stack: the one make
# run started (its ports, Seam and workspaces file, from .data/stack.env while it runs), else
# the one PORT_BASE / *_PORT and SEAM describe. Like make run, they ignore NATS_URL,
# SEAM_WEBHOOK_SECRET and WORKER_API_TOKEN in the environment: the stack's secrets are in its
# workspaces file. WORKSPACE= picks a workspace by id or name for send/register (default: the
# file's first) and limits demo to it (default: all).
WORKSPACE ?=
DEV = CARDWIRE_DEV_STACK=.data $(GO) run ./cmd/cardwire-dev

## send: POST a signed sample event to the local receiver (TYPE=acs_credential.issued, CRED= the credential id, WORKSPACE=)
TYPE ?= acs_credential.issued
CRED ?=
send:
	$(DEV) send -type $(TYPE) -credential '$(CRED)' -workspace '$(WORKSPACE)'

## register: register a pending encoding for CRED with the local worker (WORKSPACE=), with a made-up action attempt; it waits for its webhook (make send CRED=…) for CONFIRM_TIMEOUT=2m, then fails as Seam does not know the attempt
CONFIRM_TIMEOUT ?= 2m
register:
	$(DEV) register -credential '$(CRED)' -workspace '$(WORKSPACE)' -confirm-timeout '$(CONFIRM_TIMEOUT)'

## tail: print what arrives in SEAM_EVENTS (reconnects for as long as NATS is away)
tail:
	$(DEV) tail

## demo: with make run up, start a succeeding and a failing encoding in each workspace and print their outcomes and latency
demo:
	$(DEV) demo -workspace '$(WORKSPACE)'

## demo-outage: with make run up, stop the receiver, encode a card in the first workspace (WORKSPACE=), start the receiver again and show the catch-up storing the missed event and settling the encoding
demo-outage:
	$(DEV) demo-outage -workspace '$(WORKSPACE)'

## outcomes: print encoding outcomes from ENCODING_EVENTS (reconnects for as long as NATS is away)
outcomes:
	$(DEV) tail -stream ENCODING_EVENTS -subject 'encodings.>'

## clean: remove ./bin and ./.data (the local stack's NATS store and workspaces files); refused while make run is up
clean:
	@./scripts/run.sh check 'make clean'
	rm -rf $(BIN) .data
