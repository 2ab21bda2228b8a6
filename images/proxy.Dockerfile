# kubegate proxy image: LiteLLM proxy with gateway_plugins, WITHOUT kopf (the data plane never talks to the
# Kubernetes API). Build from the repo root:
#   docker build -f images/proxy.Dockerfile -t ghcr.io/kubegate/proxy:0.1.0 .
# BASE DIGEST: placeholder, NOT verified (see operator.Dockerfile).
# requirements-proxy.lock (hash-locked subset of requirements.lock without kopf and the kubernetes client)
# is to be produced by the lock owner; until then this build fails at COPY, on purpose.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:0000000000000000000000000000000000000000000000000000000000000000

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements-proxy.lock pyproject.toml ./
RUN python -m venv /opt/kubegate \
 && /opt/kubegate/bin/pip install --require-hashes --no-deps -r requirements-proxy.lock
COPY gateway_plugins ./gateway_plugins
COPY operator ./operator
# --no-deps: pyproject lists kopf, which must not enter this image; gateway_plugins never imports it.
RUN /opt/kubegate/bin/pip install --no-deps --no-build-isolation . \
 && ! /opt/kubegate/bin/python -c "import kopf" 2>/dev/null

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/kubegate /opt/kubegate
# No outbound price-map fetch: the gateway only talks to configured upstreams and Redis.
ENV PATH=/opt/kubegate/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True
RUN groupadd --gid 65532 kubegate && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin kubegate
USER 65532:65532
EXPOSE 4000
ENTRYPOINT ["litellm"]
CMD ["--config", "/etc/kubegate/config.yaml", "--port", "4000"]
