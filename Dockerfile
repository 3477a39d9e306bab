# syntax=docker/dockerfile:1
# The compute server's image: a static binary (CGO_ENABLED=0; the SQLite
# driver, modernc.org/sqlite, is pure Go) on distroless/static, run as the
# non-root user 65532. `docker build -t compute .`; docs/deploy.md.
# internal/deploy's tests read this file: they build the binary with the
# RUN go build line below and check the stages, user, ports and health.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.1.0-dev
RUN CGO_ENABLED=0 GOOS=linux GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/compute ./cmd/compute
# The data volume's mount point, owned by the runtime user (the final
# stage has no shell to make it).
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=build /out/compute /compute
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV COMPUTE_ADDR=0.0.0.0:9000 COMPUTE_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 9000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["/compute", "healthcheck"]
ENTRYPOINT ["/compute"]
CMD ["serve"]
