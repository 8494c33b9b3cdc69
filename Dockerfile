# syntax=docker/dockerfile:1
# Polaris Express, the Python processes: `polaris api`, `polaris gateway`, `polaris worker`,
# `polaris migrate`, `polaris seed demo`, `polaris sessions ...`. One image, the subcommand is the
# container's command (ENTRYPOINT is `polaris`). The auth service has its own image
# (Dockerfile.auth). See docs/selfhosting.md.

ARG PYTHON_IMAGE=python:3.11-slim
ARG NODE_IMAGE=node:20-slim

##### console-assets: the web console's npm packages, exactly as api/console/package-lock.json pins #####
FROM ${NODE_IMAGE} AS console-assets
WORKDIR /console
COPY api/console/package.json api/console/package-lock.json ./
# Runtime packages only (htmx, uPlot, fetch-event-source); axe-core is for the browser tests.
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

##### build: install the project and its dependencies into a virtualenv #####
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/polaris
ENV PATH=/opt/polaris/bin:$PATH

WORKDIR /src
# Metadata first, then the packages named in pyproject.toml ([tool.setuptools.packages.find]).
COPY pyproject.toml README.md ./
COPY worker.py ./
COPY workflows ./workflows
COPY activities ./activities
COPY gateway ./gateway
COPY api ./api
COPY domain ./domain
COPY db ./db
COPY cli ./cli
COPY config ./config
COPY sandbox ./sandbox
COPY bench ./bench
COPY observability ./observability
COPY services ./services
# A regular (non-editable) install: the runtime stage needs only the virtualenv.
RUN pip install --upgrade pip \
 && pip install . \
 && polaris --help >/dev/null
# The console serves its npm files from node_modules next to the installed api/console package
# (api/console/assets.py): put them there, and fail the build if one is missing.
COPY --from=console-assets /console/node_modules /tmp/console-node_modules
RUN cd / \
 && mv /tmp/console-node_modules \
      "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/api/console/node_modules" \
 && python -c 'from api.console.assets import missing_vendor_files as m; assert not m(), m()'

##### runtime #####
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="polaris-express" \
      org.opencontainers.image.description="Polaris Express: OCPP gateway, Temporal worker, HTTP API" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

# A fixed, unprivileged user (no shell login, no password), and the mount point of the shared
# files volume (firmware, diagnostics) owned by it, so a fresh named volume is writable.
RUN groupadd --system --gid 10001 polaris \
 && useradd --system --uid 10001 --gid polaris --home-dir /var/lib/polaris --create-home \
      --shell /usr/sbin/nologin polaris \
 && install -d -o polaris -g polaris /var/lib/polaris/files

COPY --from=build /opt/polaris /opt/polaris

ENV PATH=/opt/polaris/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    POLARIS_ENV=prod \
    POLARIS_DATA_DIR=/var/lib/polaris \
    POLARIS_API_HOST=0.0.0.0 \
    POLARIS_GATEWAY_HOST=0.0.0.0

USER polaris:polaris
WORKDIR /var/lib/polaris

# 8000: HTTP API (`polaris api`); 9000: OCPP WebSocket + /healthz (`polaris gateway`).
EXPOSE 8000 9000

ENTRYPOINT ["polaris"]
CMD ["--help"]
