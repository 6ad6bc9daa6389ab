# mqlb: one static binary (load balancer, broker node, launcher, load generator)
# in a small non-root image.
#
#   docker build -t mqlb .
#   docker run --rm -p 1883:1883 -v $PWD/mqlb.yaml:/etc/mqlb/mqlb.yaml:ro mqlb run -c /etc/mqlb/mqlb.yaml
#
# See deploy/ for compose, Kubernetes and systemd.
FROM golang:1.26-bookworm AS build
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath \
      -ldflags "-s -w -X github.com/mqlb/mqlb/internal/version.Version=${VERSION} -X github.com/mqlb/mqlb/internal/version.Commit=${COMMIT}" \
      -o /out/mqlb ./cmd/mqlb \
 && mkdir -p /out/data && /out/mqlb --version

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mqlb /usr/local/bin/mqlb
COPY --from=build --chown=65532:65532 /out/data /var/lib/mqlb
USER 65532:65532
WORKDIR /var/lib/mqlb
VOLUME ["/var/lib/mqlb"]
# MQTT, MQTT over TLS, WebSocket, admin (LB), admin (node), mesh routes
EXPOSE 1883 8883 8080 9090 9091 6222
ENTRYPOINT ["/usr/local/bin/mqlb"]
# Give the command and its config: run -c /etc/mqlb/mqlb.yaml, node -c ..., up, bench ...
CMD ["help"]
