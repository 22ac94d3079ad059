# Image for the Flows Python side (migrations, workers, emulator, CLIs).
# PostgreSQL and PostgREST run from their own images (docker-compose.yml).
FROM python:3.11-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workers ./workers
COPY sql ./sql
COPY postgrest.conf ./
RUN pip install --no-cache-dir -e . && useradd --system --no-create-home flows
ENV FLOWS_ROOT=/app FLOWS_LOG_FORMAT=json
USER flows
ENTRYPOINT ["flows"]
