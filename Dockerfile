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
# No HEALTHCHECK here: the image runs web and worker processes, the web on any port and with or
# without TLS, so one baked-in probe would mark some of them unhealthy for ever. Each service
# declares its own: docker-compose.yml (web: GET /healthz on its port; worker:
# `reactor worker --check`), or a Kubernetes Deployment's probes (/healthz, /readyz).
ENTRYPOINT ["reactor"]
CMD ["web", "--host", "0.0.0.0", "--port", "8000"]
