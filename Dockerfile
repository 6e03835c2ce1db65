# Sluice: build with cgo (SQLite, libjpeg-turbo), run on Debian slim.
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libturbojpeg0-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w" -o /out/sluice ./cmd/sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libturbojpeg0 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/sluice /usr/local/bin/sluice
COPY examples /examples
WORKDIR /data
ENV SLUICE_HOME=/data SLUICE_LISTEN=0.0.0.0:8787
EXPOSE 8787
ENTRYPOINT ["sluice"]
CMD ["run", "/examples/thumbnails"]
