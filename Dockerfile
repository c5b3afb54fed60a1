# One image for every Faregate service; docker-compose.yml picks the program per service, e.g.
#   node services/ingress/src/main.ts | services/worker/src/main.ts | services/billing/src/main.ts
# Node 24 runs the TypeScript sources directly (type stripping): there is no build step.
#
# Steps that download packages mount an optional CA bundle as a build secret, for networks behind a
# TLS-inspecting proxy:  docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt .
ARG NODE_IMAGE=node:24-slim
FROM ${NODE_IMAGE} AS base

WORKDIR /app

# pnpm from npm, at the version root package.json pins in "packageManager" (one source of truth).
# Not corepack: its signature check fails against mirrors and private registries.
COPY package.json ./
RUN --mount=type=secret,id=ca_bundle,required=false --mount=type=cache,target=/root/.npm sh -c '\
  [ -f /run/secrets/ca_bundle ] && export NODE_EXTRA_CA_CERTS=/run/secrets/ca_bundle; \
  version=$(node -p "require(\"./package.json\").packageManager.replace(/^pnpm@/, \"\").split(\"+\")[0]") \
  && npm install -g --no-fund --no-audit "pnpm@$version" && pnpm --version'

# The web console's static files (packages/console): bundled by its dev tools (esbuild, Preact,
# Chart.js) in a stage of their own; only the built dist/ reaches the image.
FROM base AS console
COPY pnpm-lock.yaml pnpm-workspace.yaml tsconfig.base.json ./
COPY patches/ patches/
COPY packages/console/package.json packages/console/
COPY packages/contracts/package.json packages/contracts/
RUN --mount=type=secret,id=ca_bundle,required=false --mount=type=cache,id=pnpm-store,target=/pnpm-store sh -c '\
  [ -f /run/secrets/ca_bundle ] && export NODE_EXTRA_CA_CERTS=/run/secrets/ca_bundle; \
  pnpm install --frozen-lockfile --store-dir /pnpm-store --package-import-method copy \
    --config.update-notifier=false --filter "@faregate/console..." --filter "!@faregate/testing"'
COPY packages/console/ packages/console/
COPY packages/contracts/src/ packages/contracts/src/
RUN node packages/console/src/build.ts

FROM base

# Manifests before sources, so the dependency layer is rebuilt only when a manifest or the lockfile
# changes. Every workspace package a service depends on must be listed here.
COPY pnpm-lock.yaml pnpm-workspace.yaml ./
# Patched dependencies (patches/README.md says why each exists); pnpm applies them at install.
COPY patches/ patches/
COPY services/ingress/package.json services/ingress/
COPY services/worker/package.json services/worker/
COPY services/billing/package.json services/billing/
COPY packages/catalog/package.json packages/catalog/
COPY packages/console/package.json packages/console/
COPY packages/contracts/package.json packages/contracts/
COPY packages/db/package.json packages/db/
COPY packages/fake-provider/package.json packages/fake-provider/
COPY packages/observability/package.json packages/observability/
COPY packages/pool/package.json packages/pool/
COPY packages/providers/package.json packages/providers/
COPY packages/queue/package.json packages/queue/

# Production dependencies of the deployables only (and their workspace dependencies); the test
# tooling (@faregate/testing: vitest, testcontainers) stays out of the image. The store is a build
# cache, not an image layer.
RUN --mount=type=secret,id=ca_bundle,required=false --mount=type=cache,id=pnpm-store,target=/pnpm-store sh -c '\
  [ -f /run/secrets/ca_bundle ] && export NODE_EXTRA_CA_CERTS=/run/secrets/ca_bundle; \
  pnpm install --frozen-lockfile --prod --store-dir /pnpm-store --package-import-method copy \
    --config.update-notifier=false \
    --filter "@faregate/ingress..." --filter "@faregate/worker..." \
    --filter "@faregate/billing..." --filter "@faregate/fake-provider..." \
    --filter "!@faregate/testing"'

COPY . .
COPY --from=console /app/packages/console/dist/ packages/console/dist/

ENV NODE_ENV=production
# The flags every service runs with (scripts/start/node-flags.ts says why; a test keeps them equal).
ENV NODE_OPTIONS=--max-semi-space-size=32
# Files stay owned by root: the services only read them.
USER node
EXPOSE 8080 8090 9091 9092
# A plain default; compose (or `docker run IMAGE node services/worker/src/main.ts`) names the program.
CMD ["node", "services/ingress/src/main.ts"]
