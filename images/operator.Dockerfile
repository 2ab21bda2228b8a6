# kubegate operator image: `kubegate operator` (kopf). Build from the repo root:
#   docker build -f images/operator.Dockerfile -t ghcr.io/kubegate/operator:0.1.0 .
# BASE: python:3.11-slim, multi-arch index digest as recorded by docker-library/repo-info
# (repos/python/remote/3.11-slim.md at commit 2477d553d2fdfa57b4ec11f63c8376eca8b7a253: Python 3.11.15 on Debian
# trixie, built 2026-08-05). Not pulled here (no registry access); the digest sits directly in each FROM so that
# Renovate's and Dependabot's docker managers bump it; keep both images and both stages on the same digest.

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock pyproject.toml ./
# Hash-locked: a tampered or substituted wheel fails the build.
RUN python -m venv /opt/kubegate \
 && /opt/kubegate/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY operator ./operator
COPY gateway_plugins ./gateway_plugins
RUN /opt/kubegate/bin/pip install --no-deps --no-build-isolation .

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
COPY --from=build /opt/kubegate /opt/kubegate
# The operator imports LiteLLM types through gateway_plugins: without the local cost map LiteLLM fetches its price
# list from the internet at import.
ENV PATH=/opt/kubegate/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True
# Matches the chart's runAsUser/runAsGroup; the root filesystem is mounted read-only there.
RUN groupadd --gid 65532 kubegate && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin kubegate
USER 65532:65532
ENTRYPOINT ["kubegate"]
CMD ["operator", "--all-namespaces"]
