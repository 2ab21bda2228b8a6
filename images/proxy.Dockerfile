# kubegate proxy image: LiteLLM proxy with gateway_plugins, WITHOUT kopf (the data plane never talks to the
# Kubernetes API). Build from the repo root:
#   docker build -f images/proxy.Dockerfile -t ghcr.io/kubegate/proxy:0.1.0 .
# requirements-proxy.lock: hash-locked subset of requirements.lock without kopf and the kubernetes client.
# BASE: python:3.11-slim, multi-arch index digest as recorded by docker-library/repo-info
# (repos/python/remote/3.11-slim.md at commit 2477d553d2fdfa57b4ec11f63c8376eca8b7a253: Python 3.11.15 on Debian
# trixie, built 2026-08-05). Not pulled here (no registry access); the digest sits directly in each FROM so that
# Renovate's and Dependabot's docker managers bump it; keep both images and both stages on the same digest.

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS build
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

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
COPY --from=build /opt/kubegate /opt/kubegate
# No outbound price-map fetch: the gateway only talks to configured upstreams and Redis.
ENV PATH=/opt/kubegate/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True
RUN groupadd --gid 65532 kubegate && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin kubegate
USER 65532:65532
EXPOSE 4000
ENTRYPOINT ["litellm"]
# The operator's proxy Deployment passes its own args; this default matches where it mounts the config.
CMD ["--config", "/etc/kubegate/config/config.yaml", "--port", "4000"]
