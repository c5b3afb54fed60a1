#!/usr/bin/env bash
# Many ingresses, many workers, still global: 3 ingress processes behind a real HAProxy and 3 worker
# processes per pool on this machine (test/scale-out.test.ts), against the Redis and Postgres in
# REDIS_URL / DATABASE_URL. Prints the figures (busiest RPM window and the share of the limit used,
# the settled total against a small balance, jobs accepted and billed across a kill -9).
#   bash scripts/scale-demo.sh          (needs haproxy: apt-get install -y haproxy)
set -euo pipefail
cd "$(dirname "$0")/.."
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
exec pnpm vitest run test/scale-out.test.ts --reporter=verbose
