#!/bin/bash
# make bench-route: the gateway with routing on (figures, not tests), in one
# run, one nginx worker, the mock LLM upstream with zero delays:
#   a. plain nginx proxy_pass (A) against the full miss path (B): body
#      inspection, a rate limit that admits everything, the route decision
#      (from the decision cache after the first request), llm_balance
#      least_tokens, a usage record per request delivered to the sidecar;
#      alternating A/B with wrk. Goal: B >= 0.85 x A.
#   b. plain proxy_pass (A) against the same gateway with the sidecar
#      stopped (C): every request of C needs a fresh decision (a new team
#      each round); the first consult fails, the next ones are not tried
#      for a second (fail-open at once), and usage records wait in the
#      spool (dropped, counted, once full). Goal: C/A >= B/A of a.
set -euo pipefail

root=$1 nginx=$2
. "$root/bench/lib.sh"

# BENCH_PORT_BASE: 3 ports from it (default 18110); BENCH_MODULE: the .so;
# BENCH_DIR: configs, logs, the sidecar's socket and data;
# BENCH_SECONDS x BENCH_ROUNDS per comparison; BENCH_CONNS: wrk connections;
# BENCH_BATCH: llm_sidecar batch= (the default when unset)
port=${BENCH_PORT_BASE:-18110}
secs=${BENCH_SECONDS:-5} rounds=${BENCH_ROUNDS:-10} conns=${BENCH_CONNS:-32}
mock_port=$port plain_port=$((port + 1)) llm_port=$((port + 2))

for bin in wrk; do
    command -v "$bin" > /dev/null \
        || { echo "bench-route: $bin is missing (make deps-bench)" >&2; exit 1; }
done

bench_init route "$root" "$nginx"
dir=$BENCH_DIR
sidecar_bin=$root/build/sidecar/llm-sidecar
[ -x "$sidecar_bin" ] || bench_die "no sidecar at $sidecar_bin (make sidecar)"
sock=$dir/sidecar.sock
sidecar_pid=

cat > "$dir/sidecar.json" <<EOC
{
  "listen": {"unix": "$sock", "unix_mode": "0666"},
  "threads": 1,
  "data_dir": "$dir/sidecar-data",
  "admin_token": "bench-admin-token-0123456789abcdef",
  "log_level": "warn",
  "price_table": "$root/conf/prices.json",
  "models": [{"name": "gpt-4o-mini", "upstream": "mock_llm", "tier": 1}],
  "classes": [{"name": "any", "min_tier": 1}],
  "teams": {"*": {"allow": ["*"]}},
  "routing": {"decision_ttl_ms": 600000}
}
EOC

sidecar_start() {
    [ -z "$sidecar_pid" ] || return 0
    # a fresh ledger each time: replaying millions of bench records would
    # make its start, not the gateway, the figure
    rm -rf "$sock" "$dir/sidecar-data"
    "$sidecar_bin" --config "$dir/sidecar.json" >> "$dir/sidecar.log" 2>&1 &
    sidecar_pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && return 0; sleep 0.05; done
    bench_die "the sidecar did not listen on $sock: $dir/sidecar.log"
}

sidecar_stop() {
    [ -n "$sidecar_pid" ] || return 0
    kill "$sidecar_pid" 2>/dev/null || true
    wait "$sidecar_pid" 2>/dev/null || true
    sidecar_pid=
}

bench_on_exit sidecar_stop

mock_start --listen "127.0.0.1:$mock_port,name=bench" \
    --ttft-ms 0 --itl-ms 0 --tokens 16

nginx_conf "$dir" 1 <<EOC
    upstream mock { server 127.0.0.1:$mock_port; keepalive 64; }
    upstream mock_llm {
        llm_balance least_tokens;
        server 127.0.0.1:$mock_port;
        keepalive 64;
    }
    llm_sidecar unix:$sock timeout=200ms spool=bench_spool:16m
                decisions=bench_decisions:4m ${BENCH_BATCH:+batch=$BENCH_BATCH};
    llm_limit_zone bench_lim:4m;
    server {
        listen 127.0.0.1:$plain_port;
        location /v1/ {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$llm_port;
        llm_gateway on;
        llm_team \$http_x_team;
        location /v1/ {
            llm_limit zone=bench_lim key=\$http_x_team rpm=100000000;
            llm_route mock_llm;
            proxy_pass http://\$llm_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOC

sidecar_start
rm -f "$dir/logs/error.log"
nginx_start "$dir" "$plain_port" "$llm_port"

body=$dir/route.json
printf '%s' '{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about NGINX."}]}' > "$body"

# CPU per request of each process on the path: utime + stime ticks of
# the nginx worker, the sidecar and the mock around every wrk run, summed
# per side in $dir/cpu.SIDE ("requests worker sidecar mock", ticks)
tck=$(getconf CLK_TCK)
worker_pid=$(pgrep -P "$(cat "$dir/logs/nginx.pid")" | head -1)
rm -f "$dir"/cpu.*

cpu_ticks() {
    local p
    for p in "$@"; do
        if [ -n "$p" ] && [ -r "/proc/$p/stat" ]; then
            # fields after the ")" of the command name: utime is 12th
            sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'
        else
            echo 0
        fi
    done | paste -sd' '
}

# CHILD_TICKS: CPU of this shell's finished children (wrk), ticks; read
# without a subshell, whose own children would be none
children_ticks() {
    local stat f
    read -r stat < "/proc/$BASHPID/stat"
    read -ra f <<< "${stat##*) }"
    CHILD_TICKS=$((f[13] + f[14]))
}

# cpu_run SIDE CMD...: CMD's figures, its CPU added to $dir/cpu.SIDE
# ("requests worker sidecar mock wrk", ticks)
cpu_run() {
    local side=$1 before after out wrk0 wrk1
    shift
    children_ticks
    wrk0=$CHILD_TICKS
    before=$(cpu_ticks "$worker_pid" "$sidecar_pid" "$bench_mock_pid")
    out=$("$@")
    after=$(cpu_ticks "$worker_pid" "$sidecar_pid" "$bench_mock_pid")
    children_ticks
    wrk1=$CHILD_TICKS
    echo "$out"
    echo "$out $before $after $wrk0 $wrk1" | awk '{
        printf "%d %d %d %d %d\n", $3, $8 - $5, $9 - $6, $10 - $7,
            $12 - $11 }' \
        >> "$dir/cpu.$side"
}

# the gateway with the sidecar up (decisions cached) or stopped (fresh
# decisions needed: a team never seen); ab_rounds runs these in subshells,
# so the sidecar is started and stopped out here
plain_a() {
    cpu_run "$1" wrk_post "$plain_port" "$body" "$secs" "$conns"
}

gw_up() {
    cpu_run a.B wrk_post "$llm_port" "$body" "$secs" "$conns" 1 \
        -H "X-Team: bench"
}

gw_down() {
    WRK_QUIET=1 cpu_run b.C wrk_post "$llm_port" "$body" "$secs" "$conns" 1 \
        -H "X-Team: bench-down-$RANDOM$RANDOM"
}

echo "bench-route: $rounds rounds x ${secs}s alternating, $conns connections," \
     "1 worker, mock upstream with zero delays"

AB_LABEL="a." ab_rounds "$rounds" \
    "A=plain_a a.A" "B=gw_up"
a_plain=${AB_MEAN[A]} a_gw=${AB_MEAN[B]} a_plain_p99=${AB_MEAN[A.2]}
a_gw_p99=${AB_MEAN[B.2]}

# the sidecar stays stopped for all of b.: restarting it between rounds
# would meet a spool filled while it was down, whose drops (cheap) would
# flatter the "up" side
sidecar_stop
AB_LABEL="b." ab_rounds "$rounds" \
    "A=plain_a b.A" "C=gw_down"
b_plain=${AB_MEAN[A]} b_down=${AB_MEAN[C]}

awk -v a="$a_plain" -v b="$a_gw" -v ap="$a_plain_p99" -v bp="$a_gw_p99" \
    -v a2="$b_plain" -v d="$b_down" 'BEGIN {
    printf "a. routed miss path (limit + cached route + balance + usage) / plain proxy_pass: %.3f (%.0f vs %.0f req/s; p99 %.2f vs %.2f ms); goal >= 0.85: %s\n",
        b / a, b, a, bp, ap, (b / a >= 0.85 ? "met" : "NOT met")
    printf "b. sidecar stopped (fresh decisions fail open, records dropped once the spool is full) / plain proxy_pass: %.3f (%.0f vs %.0f req/s)\n",
        d / a2, d, a2
    printf "   sidecar stopped / sidecar up (a.B), each against its own plain rounds: %.3f; goal >= 1 (does not fall): %s\n",
        (d / a2) / (b / a), ((d / a2) / (b / a) >= 1 ? "met" : "NOT met")
}'

echo "CPU per request, us (utime + stime over all rounds of a side):"
printf "  %-28s %9s %9s %9s %9s %9s %9s\n" side requests nginx sidecar \
    mock wrk total
for side in a.A a.B b.A b.C; do
    [ -f "$dir/cpu.$side" ] || continue
    awk -v side="$side" -v tck="$tck" '
        { n += $1; w += $2; s += $3; m += $4; c += $5 }
        END {
            name["a.A"] = "a. plain proxy_pass"
            name["a.B"] = "a. routed, sidecar up"
            name["b.A"] = "b. plain proxy_pass"
            name["b.C"] = "b. routed, sidecar stopped"
            u = 1e6 / tck / (n ? n : 1)
            printf "  %-28s %9d %9.2f %9.2f %9.2f %9.2f %9.2f\n",
                name[side], n, w * u, s * u, m * u, c * u,
                (w + s + m + c) * u
        }' "$dir/cpu.$side"
done

grep -E "^\S+ \S+ \[(error|crit|alert|emerg)\]" "$dir/logs/error.log" \
    | grep -v "llm sidecar spool" | head -5 || true
