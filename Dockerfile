# syntax=docker/dockerfile:1
# extauthz: a static Go binary on distroless/static (CA certificates, no shell, uid 65532).
#   docker build --build-arg VERSION=$(git describe --tags --always) -t extauthz .
#
# Base images are pinned by digest. The digests below are the ones published for
# these tags as last seen (golang 2026-07-12, distroless 2026-08-26); refresh them with
#   crane digest golang:1.26-bookworm && crane digest gcr.io/distroless/static-debian12:nonroot
ARG GO_IMAGE=golang:1.26-bookworm@sha256:18aedc16aa19b3fd7ded7245fc14b109e054d65d22ed53c355c899582bbb2113
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY internal/ internal/
ARG VERSION=dev
# The same flags as `make build`: static, no cgo, reproducible paths.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/extauthz ./cmd/extauthz

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/extauthz /extauthz
USER 65532:65532
EXPOSE 9001 9002 9003
ENTRYPOINT ["/extauthz"]
CMD ["serve"]
