# The project's four images, for users with a container engine:
#   docker build --target manager .            (ghcr.io/llmquota/manager)
#   docker build --target node-agent .         (ghcr.io/llmquota/node-agent)
#   docker build --target provider-emulator .  (ghcr.io/llmquota/provider-emulator)
#   docker build --target gateway .            (ghcr.io/llmquota/gateway)
# `make images` builds the same images without a container engine
# (hack/images): the same binaries and flags, nonroot 65532, CA
# certificates, no shell; keep the two in step. The node agent loads the
# NVIDIA driver's libnvidia-ml at run time through go-nvml, which needs cgo
# and glibc, so its base is distroless/base (glibc) and the others' is
# distroless/static.
FROM golang:1.26 AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN LDFLAGS="-s -w -X github.com/llmquota/llmquota/internal/version.Version=${VERSION}" && \
    CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o /out/manager ./cmd/manager && \
    CGO_ENABLED=1 go build -trimpath -ldflags "$LDFLAGS" -o /out/node-agent ./cmd/node-agent && \
    CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o /out/provider-emulator ./cmd/provider-emulator && \
    CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o /out/gateway ./cmd/gateway

FROM gcr.io/distroless/static-debian12:nonroot AS gateway
COPY --from=build /out/gateway /gateway
USER 65532:65532
ENTRYPOINT ["/gateway"]

FROM gcr.io/distroless/static-debian12:nonroot AS provider-emulator
COPY --from=build /out/provider-emulator /provider-emulator
USER 65532:65532
ENTRYPOINT ["/provider-emulator"]

FROM gcr.io/distroless/base-debian12:nonroot AS node-agent
COPY --from=build /out/node-agent /node-agent
USER 65532:65532
ENTRYPOINT ["/node-agent"]

FROM gcr.io/distroless/static-debian12:nonroot AS manager
COPY --from=build /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
