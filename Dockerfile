# syntax=docker/dockerfile:1
# One image for both processes: `reactor web` (default) or `reactor worker`.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/reactor
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY simulator ./simulator
RUN /opt/reactor/bin/pip install --no-cache-dir .

FROM python:3.11-slim
ENV PATH=/opt/reactor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    REACTOR_LOG_FORMAT=json
RUN useradd --create-home --uid 10001 reactor
COPY --from=build /opt/reactor /opt/reactor
COPY atlassian-connect.json manifest.yml /app/
WORKDIR /app
USER reactor
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["reactor"]
CMD ["web", "--host", "0.0.0.0", "--port", "8000"]
