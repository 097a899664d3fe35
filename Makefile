# cardwire — the two commands a newcomer needs are `make run` and `make test`.
GO       ?= go
PKG      ?= ./...
T        ?= .
FUZZTIME ?= 10s
BIN      := bin

.PHONY: build test test-only lint bench fuzz run send tail clean

## build: compile every binary into ./bin (the NATS server included, for make run)
build:
	$(GO) build -o $(BIN)/ ./cmd/...
	$(GO) build -o $(BIN)/nats-server github.com/nats-io/nats-server/v2

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

## bench: Go benchmarks (verify+parse, full handler with JetStream publish); T= picks some
bench:
	$(GO) test -run '^$$' -bench '$(T)' -benchmem $(PKG)

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseEnvelope$$' -fuzztime $(FUZZTIME) ./internal/events
	$(GO) test -run '^$$' -fuzz '^FuzzEventSubject$$' -fuzztime $(FUZZTIME) ./internal/streams

## run: the whole local stack (NATS with JetStream under ./.data, the receiver); Ctrl-C stops it
run: build
	./scripts/run.sh

## send: POST a signed sample event to the local receiver (TYPE=acs_credential.issued)
TYPE ?= acs_credential.issued
send:
	$(GO) run ./cmd/cardwire-dev send -type $(TYPE)

## tail: print what arrives in SEAM_EVENTS
tail:
	$(GO) run ./cmd/cardwire-dev tail

clean:
	rm -rf $(BIN) .data
