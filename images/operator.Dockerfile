# kubegate operator image: `kubegate operator` (kopf). Build from the repo root:
#   docker build -f images/operator.Dockerfile -t ghcr.io/kubegate/operator:0.1.0 .
# BASE DIGEST: placeholder, NOT verified (no registry access where this was written). The release process
# must replace it with the digest of python:3.11-slim it verified; tests/helm/test_static.py only checks the form.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:0000000000000000000000000000000000000000000000000000000000000000

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock pyproject.toml ./
# Hash-locked: a tampered or substituted wheel fails the build.
RUN python -m venv /opt/kubegate \
 && /opt/kubegate/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY operator ./operator
COPY gateway_plugins ./gateway_plugins
RUN /opt/kubegate/bin/pip install --no-deps --no-build-isolation .

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/kubegate /opt/kubegate
ENV PATH=/opt/kubegate/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Matches the chart's runAsUser/runAsGroup; the root filesystem is mounted read-only there.
RUN groupadd --gid 65532 kubegate && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin kubegate
USER 65532:65532
ENTRYPOINT ["kubegate"]
CMD ["operator", "--all-namespaces"]
