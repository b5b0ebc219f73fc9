# Builds the offerflow binary; the image runs `offerflow serve` against DATABASE_URL.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin offerflow

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/offerflow /usr/local/bin/offerflow
ENV OFFERFLOW_BIND=0.0.0.0:8080
EXPOSE 8080
CMD ["offerflow", "serve"]
