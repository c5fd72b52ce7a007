# Recipes for everyday work. `just` is optional: each recipe is one plain
# command you can run yourself.

# Bring up a server and an agent on loopback with a route, until Ctrl-C.
demo:
    go run ./cmd/tunnel-quickstart

# The test suite, with the race detector (the README's test command).
test:
    go test -race ./...

# Print the benchmark table: tunnel vs direct vs the reference relay.
bench *ARGS:
    go run ./cmd/tunnel-bench {{ARGS}}

# Build tunnel-server and tunnel-agent into ./bin.
build:
    go build -o bin/ ./cmd/tunnel-server ./cmd/tunnel-agent

# gofmt and go vet.
lint:
    test -z "$(gofmt -l .)" || (gofmt -l . && exit 1)
    go vet ./...

# What CI runs.
ci:
    .ci/run

# Release binaries for linux/amd64, linux/arm64, darwin/arm64 and
# windows/amd64 (or the platforms given, e.g. `just release linux/amd64`)
# into ./dist, with version information and SHA256SUMS.
release *PLATFORMS:
    packaging/release.sh {{PLATFORMS}}
