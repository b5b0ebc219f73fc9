# Builds the offerflow binary; the image runs `offerflow serve` against DATABASE_URL.
FROM rust:1-bookworm AS build
WORKDIR /src
# llama.cpp (through llama-cpp-2) builds with cmake and needs libclang for its bindings.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang libclang-dev && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --bin offerflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libgomp1 libstdc++6 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/offerflow /usr/local/bin/offerflow
ENV OFFERFLOW_BIND=0.0.0.0:8080
EXPOSE 8080
CMD ["offerflow", "serve"]
