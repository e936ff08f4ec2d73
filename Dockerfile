# syntax=docker/dockerfile:1
# Kite Cloud Connector images. Stages:
#   build      npm ci (with dev dependencies), `npm run build`: TypeScript to lib/ and the prebuilt workflow bundle;
#              the simulator on its own to lib-simulator/
#   prod-deps  production dependencies only
#   simulator  the Kite simulator, for demos (`docker compose --profile simulator up`); needs openssl for its certs
#   worker     the default (last) stage: the Temporal worker, non-root, production dependencies only
# Debian slim, not Alpine: the Temporal SDK's native core needs glibc; slim needs ca-certificates for TLS.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

FROM ${NODE_IMAGE} AS base
RUN apt-get update \
  && apt-get install -y --no-install-recommends ca-certificates \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app

FROM base AS build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY shared ./shared
COPY workflows ./workflows
COPY activities ./activities
COPY kite ./kite
COPY record ./record
COPY state ./state
COPY targets ./targets
COPY worker ./worker
COPY cli ./cli
COPY simulator ./simulator
COPY tsconfig.simulator.json ./
# The worker's lib/ carries no simulator; the simulator is built on its own into lib-simulator/.
RUN npm run build && npx tsc -p tsconfig.simulator.json

FROM base AS prod-deps
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM base AS runtime
ENV NODE_ENV=production
COPY package.json ./
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/lib ./lib

FROM runtime AS simulator
RUN apt-get update \
  && apt-get install -y --no-install-recommends openssl \
  && rm -rf /var/lib/apt/lists/* \
  && mkdir -p /kite-certs && chown node:node /kite-certs
USER node
EXPOSE 8443
COPY --from=build /app/lib-simulator ./lib-simulator
ENTRYPOINT ["node", "lib-simulator/simulator/cli.js"]
CMD ["--host", "0.0.0.0", "--port", "8443", "--cert-dir", "/kite-certs"]

FROM runtime AS worker
# The bundle `npm run build` wrote: the worker starts without webpack.
# V8 heap sizing: uncapped, V8 grows the heap far past the live data; capped alone, it spends more time in GC. A
# larger young generation keeps short-lived page objects out of the old one (BENCHMARKS.md: peak RSS 311 → 250 MB
# on 100k SIMs at the same CPU); since the worker grows the old generation 2× past a collection (worker/main.ts),
# 16 MB semi-spaces keep a 1,000,000-SIM worker under 300 MB where 32 MB did not (330 → 284 MB, and faster).
# The bench runs its worker with the same flags (bench/processes.ts).
ENV KITE_WORKFLOW_BUNDLE=/app/lib/workflow-bundle.js \
    KITE_METRICS_ADDRESS=0.0.0.0:9464 \
    NODE_OPTIONS="--max-old-space-size=256 --max-semi-space-size=16"
USER node
EXPOSE 9464
CMD ["node", "lib/worker/main.js"]
