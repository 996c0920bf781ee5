# Switchyard container image.
#   docker build -t switchyard:0.1.0 .          (or: az acr build -r <acr> -t switchyard:0.1.0 .)
# Build stage: Debian 12 with the toolchain and the -dev packages the Makefile
# links against (-lssl -lcrypto -lyaml -ljansson -lnghttp2 -luring -lpthread -ldl), plus libcurl's
# headers: the ACME client loads libcurl4 at run time (dlopen).
FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential ca-certificates libssl-dev libyaml-dev libcurl4-openssl-dev libjansson-dev \
      libnghttp2-dev liburing-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" \
 && test -x build/switchyard

# Runtime stage: only the shared libraries, CA certificates and the binary.
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libssl3 libyaml-0-2 libcurl4 libjansson4 libnghttp2-14 liburing2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /etc/switchyard /var/lib/switchyard \
 && chown 65532:65532 /var/lib/switchyard \
 && chmod 0700 /var/lib/switchyard
COPY --from=build /src/build/switchyard /usr/local/bin/switchyard
# Unprivileged ports (the Kubernetes Service maps 80/443); 9901 is the admin
# listener (/healthz /readyz /metrics).
EXPOSE 8080 8443 9901
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/switchyard", "-c", "/etc/switchyard/switchyard.yaml"]
