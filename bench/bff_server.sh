# Sourced by the bench scripts: start/stop one bff worker pinned like the peers (SERVER_CPU).
# Needs ROOT (the repo), WORK (the peers copy), SERVER_CPU; BFF_WORKERS (default 1); BFF_CODE
# (default ROOT: the checkout whose code is served, with ROOT's venv); sets BFF_PID.
BENCH_SECRET=bff-development-secret-do-not-use-in-production-bench

bff_start() {  # bff_start <database url> <port> <tokens file>
  local db="$1" port="$2" tokens="$3"
  pushd "${BFF_CODE:-$ROOT}" >/dev/null  # uvicorn's --app-dir "." puts this checkout first
  # `bff run`, as the Procfile serves it: several workers each listen on a socket of their own.
  DATABASE_URL="$db" LOG_LEVEL=WARNING RATE_LIMIT_ENABLED=false BFF_ENV=production JWT_SECRET="$BENCH_SECRET" \
    nohup taskset -c "$SERVER_CPU" "$ROOT/.venv/bin/python" -m bff.cli run --no-migrate --host 127.0.0.1 \
    --port "$port" --workers "${BFF_WORKERS:-1}" > "$WORK/.run/logs/bff-$port.log" 2>&1 &
  BFF_PID=$!
  JWT_SECRET="$BENCH_SECRET" JWT_TTL_SECONDS=86400 "$ROOT/.venv/bin/bff" token --user 1 --count 10000 > "$tokens"
  popd >/dev/null
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "bff did not open port $port; see $WORK/.run/logs/bff-$port.log" >&2
  return 1
}

bff_stop() {
  kill "$BFF_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$BFF_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$BFF_PID" 2>/dev/null || true
}

harness_up() {  # for tools run after one `make bench`: into its copy, its Postgres up, bff's logs dir
  [ -d "$WORK" ] || { echo "run 'make bench' once first: it sets up $WORK" >&2; return 1; }
  cd "$WORK"
  . ./env.sh
  deps/up >/dev/null
  mkdir -p .run/logs
}

bff_start_bench() {  # bff_start_bench <port>: on the harness's bff_bench database, with its tokens
  bff_start "postgresql://postgres@127.0.0.1:$PG_PORT/bff_bench" "$1" "$WORK/.run/bff-tokens.txt"
}

load_home() {  # load_home <label> <concurrency> <duration s> <out.jsonl> [warm-up s]: the harness's Home load on the bff_start_bench server
  ./bench-query "$1" "http://127.0.0.1:$BFF_PORT/graphql" ops/home-relay.json "tokens:$WORK/.run/bff-tokens.txt" \
    --server-pid "$BFF_PID" --concurrency "$2" --duration "$3" --warmup "${5:-3}" --out "$4"
}

ab_worktree() {  # ab_worktree <rev>: prints its short hash, with a worktree of it in .tmp/ab/<hash> (made once)
  # By hash: a name such as HEAD or a branch, which moves, never reuses a worktree made for another commit.
  local short
  short="$(git -C "$ROOT" rev-parse --short "$1^{commit}")"
  [ -d "$ROOT/.tmp/ab/$short" ] || git -C "$ROOT" worktree add -q --detach "$ROOT/.tmp/ab/$short" "$short" >&2
  echo "$short"
}
