# mqlb — see README.md. `make test` is what CI runs (.ci/run).
GO ?= go
BIN := bin/mqlb
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -X github.com/mqlb/mqlb/internal/version.Version=$(VERSION) -X github.com/mqlb/mqlb/internal/version.Commit=$(COMMIT)

.PHONY: build test vet up demo fuzz bench clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/mqlb

# The test command: vet, then every test with the race detector.
test: vet
	$(GO) test -race -count=1 -timeout 15m ./...

vet:
	$(GO) vet ./...

# The whole system on this machine: LB on :1883, 3 clustered nodes, admin on :9090.
up: build
	$(BIN) up

# mqlb run in front of three local mosquitto brokers (examples/mqlb.yaml).
demo: build
	scripts/demo.sh

# Short fuzzing of every parser of untrusted bytes (the corpus is in testdata/fuzz).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseConnect -fuzztime $(FUZZTIME) ./internal/mqttwire/
	$(GO) test -run '^$$' -fuzz FuzzReadConnectChunks -fuzztime $(FUZZTIME) ./internal/mqttwire/
	$(GO) test -run '^$$' -fuzz FuzzConnack -fuzztime $(FUZZTIME) ./internal/mqttwire/
	$(GO) test -run '^$$' -fuzz FuzzRewriteConnect -fuzztime $(FUZZTIME) ./internal/mqttwire/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./internal/proxyhdr/
	$(GO) test -run '^$$' -fuzz FuzzEnvelope -fuzztime $(FUZZTIME) ./internal/node/meshwire/
	$(GO) test -run '^$$' -fuzz FuzzTag -fuzztime $(FUZZTIME) ./internal/node/meshwire/
	$(GO) test -run '^$$' -fuzz FuzzRequestHeaders -fuzztime $(FUZZTIME) ./internal/adminhttp/
	$(GO) test -run '^$$' -fuzz FuzzMeshMessage -fuzztime $(FUZZTIME) ./internal/node/
	$(GO) test -run '^$$' -fuzz FuzzConn -fuzztime $(FUZZTIME) ./internal/node/inbound/

# Go benchmarks of the hot paths (CONNECT inspection, relay, policy pick,
# one client's whole way through the load balancer).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/mqttwire/ ./internal/relay/ ./internal/balance/
	$(GO) test -run '^$$' -bench ConnectThroughLB -benchmem ./internal/lb/

clean:
	rm -rf bin
