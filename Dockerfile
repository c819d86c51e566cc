# Tocsin: one image for every process type; the command picks it (web, worker, listen, serve).
#   docker build -t tocsin .
#   docker run --rm -e TOCSIN_REDIS_URL=redis://redis:6379/2 tocsin doctor

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY templates ./templates
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
# Mastodon's images run as an unprivileged user too (uid 991).
RUN groupadd --system --gid 991 tocsin \
    && useradd --system --uid 991 --gid tocsin --home-dir /var/lib/tocsin --create-home tocsin
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 991:991
WORKDIR /var/lib/tocsin
ENV TOCSIN_DATA_DIR=/var/lib/tocsin \
    PROMETHEUS_MULTIPROC_DIR=/tmp/tocsin-metrics \
    PYTHONUNBUFFERED=1
EXPOSE 8000
ENTRYPOINT ["tocsin"]
CMD ["web", "--host", "0.0.0.0"]
