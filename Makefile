# cardwire — the two commands a newcomer needs are `make run` and `make test`.
GO       ?= go
PKG      ?= ./...
T        ?= .
FUZZTIME ?= 10s
BIN      := bin
VERSION  ?= dev
IMAGE_PREFIX ?= ghcr.io/cardwire

.PHONY: image build test test-only lint bench fuzz run demo demo-outage send register tail outcomes clean

## build: compile every binary into ./bin (the operator CLI bin/cardwire, and the NATS server for make run)
build:
	$(GO) build -ldflags "-X github.com/cardwire/cardwire/internal/lifecycle.version=$(VERSION)" -o $(BIN)/ ./cmd/...
	$(GO) build -o $(BIN)/nats-server github.com/nats-io/nats-server/v2

## image: container images of the receiver and the worker, each with the operator CLI /cardwire (needs a running Docker engine)
image:
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine is reachable (docker info failed); start one, or build on a machine that has one"; exit 1; }
	for b in webhook-receiver worker; do \
	  docker build --build-arg BINARY=$$b --build-arg VERSION=$(VERSION) -t $(IMAGE_PREFIX)/$$b:$(VERSION) . || exit 1; \
	done

## test: lint, then every test with the race detector (fuzz seeds included); PKG= and T= narrow it
test: lint test-only

test-only:
	$(GO) test -race -count=1 -run '$(T)' $(PKG)

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

## run: the whole local stack (NATS with JetStream under ./.data, receiver, Seam simulator, worker; two workspaces from .data/workspaces.json); Ctrl-C stops it
run: build
	./scripts/run.sh

# The local stack's workspaces (make run writes the file); WORKSPACE= picks one by id or
# name for send/register (default: the file's first) and limits demo to it (default: all).
WORKSPACES_FILE ?= .data/workspaces.json
WORKSPACE ?=

## send: POST a signed sample event to the local receiver (TYPE=acs_credential.issued, CRED= the credential id, WORKSPACE=)
TYPE ?= acs_credential.issued
CRED ?=
send:
	WORKSPACES_FILE='$(WORKSPACES_FILE)' $(GO) run ./cmd/cardwire-dev send -type $(TYPE) -credential '$(CRED)' -workspace '$(WORKSPACE)'

## register: register a pending encoding for CRED with the local worker (WORKSPACE=)
register:
	WORKSPACES_FILE='$(WORKSPACES_FILE)' $(GO) run ./cmd/cardwire-dev register -credential '$(CRED)' -workspace '$(WORKSPACE)'

## tail: print what arrives in SEAM_EVENTS
tail:
	$(GO) run ./cmd/cardwire-dev tail

## demo: with make run up, start a succeeding and a failing encoding in each workspace and print their outcomes and latency
demo:
	WORKSPACES_FILE='$(WORKSPACES_FILE)' $(GO) run ./cmd/cardwire-dev demo -workspace '$(WORKSPACE)'

## demo-outage: with make run up, stop the receiver, encode a card in the first workspace (WORKSPACE=), start the receiver again and show the catch-up storing the missed event and settling the encoding
demo-outage:
	WORKSPACES_FILE='$(WORKSPACES_FILE)' $(GO) run ./cmd/cardwire-dev demo-outage -workspace '$(WORKSPACE)'

## outcomes: print encoding outcomes from ENCODING_EVENTS
outcomes:
	$(GO) run ./cmd/cardwire-dev tail -stream ENCODING_EVENTS -subject 'encodings.>'

clean:
	rm -rf $(BIN) .data
