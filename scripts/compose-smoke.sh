#!/usr/bin/env bash
# Proves the docker-compose stack end to end: builds the image and starts every service, waits for
# the ingress and the worker pools, sends one chat completion through the fake provider with the
# demo key, and checks that its usage row was settled in Postgres. Always tears the stack down.
#
#   bash scripts/compose-smoke.sh        (from anywhere; needs Docker, and ../shared/ci/)
#
# Runs as its own compose project with its own volumes, so it never touches a developer's stack, and
# overrides the settings that matter from any .env (provider keys: the fake serves every pool).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
shared=${SHARED_CI_DIR:-$root/../shared/ci}
eval "$("$shared/ensure-node.sh")"

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-faregate-smoke}
export FAREGATE_PORT=${FAREGATE_PORT:-8080}
export FAREGATE_BOOTSTRAP_KEY=fg-demo-key-change-me
export FAKE_PROVIDER_URL=http://fake-provider:8090
export COMPOSE_PROFILES=''
export POSTGRES_USER=faregate POSTGRES_PASSWORD=faregate POSTGRES_DB=faregate
for v in OPENAI ANTHROPIC GEMINI LLAMA; do export "${v}_API_KEY=" "${v}_BASE_URL="; done
pools=(openai anthropic gemini llama)
base=http://127.0.0.1:$FAREGATE_PORT
deadline_s=${SMOKE_DEADLINE_S:-180}

compose=(docker-compose)
command -v docker-compose >/dev/null || compose=(docker compose)
log() { echo "smoke: $*" >&2; }
started=$SECONDS
step=$SECONDS
lap() { log "$1 ($((SECONDS - step)) s)"; step=$SECONDS; }

finish() {
  local rc=$?
  if ((rc != 0)); then
    log "FAILED (exit $rc); container state and logs follow"
    "${compose[@]}" ps >&2 || true
    "${compose[@]}" logs --no-color --tail=150 >&2 || true
  fi
  log "tearing the stack down"
  "${compose[@]}" down -v --remove-orphans >&2 || true
  log "total $((SECONDS - started)) s"
  exit "$rc"
}
trap finish EXIT

# Polls `$@` until it succeeds, or fails once the stack has been up for deadline_s.
wait_for() {
  local what=$1
  shift
  until "$@"; do
    if ((SECONDS - up_since >= deadline_s)); then
      log "timed out after ${deadline_s} s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

log "building the image and starting the stack (project $COMPOSE_PROJECT_NAME, port $FAREGATE_PORT)"
# What ../shared/ci/compose-up.sh does, under this project's image variable: start the engine and its
# stand-in base images (no registry here), build the image with BuildKit, run the stack without building.
eval "$("$shared/docker-offline.sh" | tail -3)"
# docker-offline.sh installs docker-compose when it is missing: choose the client only now.
compose=(docker-compose)
command -v docker-compose >/dev/null || compose=(docker compose)
export FAREGATE_IMAGE=${FAREGATE_IMAGE:-faregate:ci}
builder=/usr/bin/docker
[[ -x $builder ]] || builder=docker
DOCKER_BUILDKIT=1 "$builder" build -q --secret "id=ca_bundle,src=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" \
  --build-arg NODE_IMAGE=local/node:24 -t "$FAREGATE_IMAGE" . >&2
"${compose[@]}" up --no-build -d
lap "stack started"
up_since=$SECONDS

readyz=''
ready() { readyz=$(curl -fsS --max-time 3 "$base/readyz" 2>/dev/null); }
wait_for "$base/readyz" ready
lap "ingress ready: $readyz"

# The ingress learns the pools from what the workers publish once they have listed their models.
pools_up() {
  ready || return 1
  node -e 'const r = JSON.parse(process.argv[1]); process.exit(process.argv.slice(2).every((p) => r.pools.includes(p)) ? 0 : 1)' \
    "$readyz" "${pools[@]}"
}
wait_for "pools ${pools[*]}" pools_up
lap "pools discovered: $readyz"

body='{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"What is the largest planet?"}]}'
reply=$(curl -sS --max-time 60 -w '\n%{http_code}' -H "authorization: Bearer $FAREGATE_BOOTSTRAP_KEY" \
  -H 'content-type: application/json' -d "$body" "$base/v1/chat/completions")
status=${reply##*$'\n'}
reply=${reply%$'\n'*}
[[ $status == 200 ]] || { log "chat completion answered HTTP $status: $reply"; exit 1; }
# Prints "<id> <prompt_tokens> <completion_tokens>" when the answer has content and usage.
read -r id prompt_tokens completion_tokens < <(node -e '
  const r = JSON.parse(process.argv[1]);
  const content = r.choices?.[0]?.message?.content;
  const u = r.usage ?? {};
  if (typeof content !== "string" || content.length === 0) throw new Error("no content in the answer");
  if (!(u.prompt_tokens > 0 && u.completion_tokens > 0)) throw new Error("no usage in the answer");
  if (!/^[A-Za-z0-9_-]+$/.test(r.id)) throw new Error(`unexpected id ${r.id}`);
  console.log(r.id, u.prompt_tokens, u.completion_tokens);
' "$reply") || { log "bad answer: $reply"; exit 1; }
lap "chat completion $id answered ($prompt_tokens prompt + $completion_tokens completion tokens)"

# The image carries the web console's built files (the Dockerfile's console stage).
page=$(curl -fsS --max-time 5 "$base/admin/console/") || { log "the web console is not served"; exit 1; }
[[ $page == *'src="app.js"'* ]] || { log "the web console's page is not the built one: $page"; exit 1; }
curl -fsS --max-time 5 -o /dev/null "$base/admin/console/app.js" || { log "the console's app.js is not served"; exit 1; }
lap "web console served"

row=''
settled() {
  row=$("${compose[@]}" exec -T postgres psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -At -c "select provider, input_tokens, output_tokens, outcome from usage_events where request_id = '$id'" 2>/dev/null)
  [[ -n $row ]]
}
wait_for "the usage row of $id in Postgres" settled
expected="openai|$prompt_tokens|$completion_tokens|success"
[[ $row == "$expected" ]] || { log "usage row is '$row', expected '$expected'"; exit 1; }
lap "usage settled in Postgres: $row"
log "OK"
