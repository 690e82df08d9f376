# Builds the manager, the node agent and the provider emulator into one
# non-root, distroless image. The node agent loads the NVIDIA driver's
# libnvidia-ml at run time through go-nvml, which needs cgo and glibc, so
# the base is distroless/base (glibc) rather than static. Not built in this
# repository's CI: its machines have no container engine (see
# docs/install.md).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/manager ./cmd/manager && \
    CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" -o /out/node-agent ./cmd/node-agent && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/provider-emulator ./cmd/provider-emulator

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /out/ /
USER 65532:65532
ENTRYPOINT ["/manager"]
