# One Dockerfile for every cardwire binary: build with
#   docker build --build-arg BINARY=webhook-receiver --build-arg VERSION=0.6.0 --build-arg COMMIT=$(git rev-parse --short=12 HEAD) -t cardwire/webhook-receiver:0.6.0 .
#   docker build --build-arg BINARY=worker … -t cardwire/worker:0.6.0 .
# (`make image-docker` builds both; `make image` builds the same images with
# ko, no Docker engine needed.) The result is a static binary on distroless,
# running as the nonroot user, with CA certificates and no shell. Every image
# also holds the operator CLI, /cardwire, which reads the same environment:
#   kubectl exec deploy/worker -- /cardwire deadletters list
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
ARG BINARY=webhook-receiver
ARG VERSION=dev
# The commit: .git is not in the build context (-buildvcs=false), so make
# image passes it.
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -ldflags "-s -w -X github.com/cardwire/cardwire/internal/lifecycle.version=${VERSION} -X github.com/cardwire/cardwire/internal/lifecycle.commit=${COMMIT}" \
      -o /out/app ./cmd/${BINARY} && \
    CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -ldflags "-s -w -X github.com/cardwire/cardwire/internal/lifecycle.version=${VERSION} -X github.com/cardwire/cardwire/internal/lifecycle.commit=${COMMIT}" \
      -o /out/cardwire ./cmd/cardwire

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app /app
COPY --from=build /out/cardwire /cardwire
USER 65532:65532
ENTRYPOINT ["/app"]
