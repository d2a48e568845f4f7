# syntax=docker/dockerfile:1
# webhookd container image: the Rust binary on distroless/cc (glibc, libgcc, CA certificates; no shell).
#   docker build -t ghcr.io/webhookd/webhookd:0.1.0 .
#   docker build --build-arg PGO=0 -t webhookd:plain .   (quicker: no profile-guided build)

FROM rust:1-bookworm AS build
# PGO=1 (the default): a profile-guided build (scripts/build-pgo.sh, which installs the
# redis-server it trains against and rustup's llvm-tools); PGO=0: the plain release build.
ARG PGO=1
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of the
# cached target dir because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    if [ "$PGO" = 1 ]; then \
      scripts/build-pgo.sh /out/webhookd; \
    else \
      cargo build --release --locked --bin webhookd \
      && install -D -m 0755 target/release/webhookd /out/webhookd; \
    fi

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/webhookd /usr/local/bin/webhookd
# The sample config; the Helm chart mounts its own config over /etc/webhookd.
COPY config.yaml /etc/webhookd/config.yaml
# Same numeric UID/GID as the Helm chart's securityContext (runAsUser 10001).
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/webhookd"]
CMD ["serve", "--config", "/etc/webhookd/config.yaml"]
