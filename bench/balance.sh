#!/bin/bash
# make bench-balance: the balancers of issue 5 side by side. Four mock
# replicas simulate a prefix cache (uncached prompt tokens cost TTFT, a
# cache too small to hold every group on one replica); nginx with the
# module has one upstream per method; bench/loadgen sends the same
# fixed-seed traces (bench/traces/gen.py) with open-loop Poisson arrivals
# (fixed seed) to each, the mock caches reset before every run. The oracle
# is loadgen itself sending each request straight to the replica of a
# perfect prefix -> replica assignment with load balance. Then the
# balancing overhead: wrk on a zero-work mock, A/B alternating, 1 worker.
# Figures, not tests: 2 shared cores, expect noise.
#
#   bash bench/balance.sh ROOT NGINX [LOADGEN]
#
# Environment: BENCH_PORT_BASE (20 ports, default 19100: replicas +0..+3,
# nginx +10..+19), BENCH_MODULE, BENCH_DIR, BENCH_RATE (arrivals/s, 100),
# BENCH_SEED (1), BENCH_SLO_MS (TTFT goal, 50), BENCH_SLO_COLD_MS (the
# no-sharing trace, where every prompt is cold: 100), BENCH_PREFILL_US
# (40: a cold 2048-token prefix costs ~82 ms), BENCH_CACHE_BLOCKS (2048
# blocks of 16 tokens: 16 of the 64 group prefixes per replica, exactly
# the oracle's share), BENCH_REQUESTS (per trace, 1024), BENCH_METHODS
# (prefix_w, prefix_s1w: wait=40ms; prefix_wN, prefix_s1wN: wait=N ms;
# prefix_wNcM: wait=N ms cold_wait=M ms; prefix_eEs1wN: epsilon=0.E
# slack=1 wait=N ms), BENCH_SCENARIOS (set and empty: the overhead part
# only),
# BENCH_ROUNDS / BENCH_SECONDS (overhead, 3 x 5 s; BENCH_ROUNDS=0 skips).
set -euo pipefail

root=$1 nginx=$2
loadgen=${3:-$root/build/bench/loadgen}
. "$root/bench/lib.sh"
bench_init balance "$root" "$nginx"
dir=$BENCH_DIR
[ -x "$loadgen" ] || bench_die "no load generator at $loadgen"

base=${BENCH_PORT_BASE:-19100}
rate=${BENCH_RATE:-100} seed=${BENCH_SEED:-1}
slo=${BENCH_SLO_MS:-50} slo_cold=${BENCH_SLO_COLD_MS:-100}
prefill_us=${BENCH_PREFILL_US:-40} blocks=${BENCH_CACHE_BLOCKS:-2048}
requests=${BENCH_REQUESTS:-1024}
rounds=${BENCH_ROUNDS:-3} secs=${BENCH_SECONDS:-5}
methods=${BENCH_METHODS:-rr least_conn random2 least_tokens peak_ewma prefix prefix_s1 prefix_w160 prefix_s1w160 oracle}
scenarios=${BENCH_SCENARIOS-shared nosharing zipf slow 429}
mock_opts=(--tokens 8 --itl-ms 5)

# the llm_balance methods need H1's directive in the module
if ! grep -q '"llm_balance"' "$root/ngx_llm_module/"*.c 2>/dev/null; then
    echo "balance: llm_balance is not in this tree: native methods only" >&2
    methods=$(echo "$methods" | tr ' ' '\n' \
              | grep -Ev '^(least_tokens|peak_ewma|prefix.*)$' | paste -sd' ')
fi

declare -A directive=(
    [rr]="" [least_conn]="least_conn;" [random2]="random two least_conn;"
    [least_tokens]="llm_balance least_tokens;"
    [peak_ewma]="llm_balance peak_ewma seed=1;"
    [prefix]="llm_balance prefix;" [prefix_e1]="llm_balance prefix epsilon=1;"
    [prefix_s1]="llm_balance prefix slack=1;"
)

# prefix_w / prefix_s1w: wait=40ms (the sweep's choice); prefix_wN,
# prefix_s1wN: wait=N ms, for a sweep
directive_of() {
    case $1 in
        prefix_w) echo "llm_balance prefix wait=40ms;" ;;
        prefix_s1w) echo "llm_balance prefix slack=1 wait=40ms;" ;;
        prefix_w[0-9]*c[0-9]*)
            # prefix_wWcC: wait=W ms, cold_wait=C ms (prefix_w160c10)
            local w=${1#prefix_w}
            echo "llm_balance prefix wait=${w%%c*}ms cold_wait=${w#*c}ms;" ;;
        prefix_w[0-9]*) echo "llm_balance prefix wait=${1#prefix_w}ms;" ;;
        prefix_s1w[0-9]*)
            echo "llm_balance prefix slack=1 wait=${1#prefix_s1w}ms;" ;;
        prefix_e[0-9]*)
            # prefix_eEs1wW: epsilon=0.E slack=1 wait=W ms (prefix_e20s1w40)
            local e=${1#prefix_e} w=${1##*w}
            echo "llm_balance prefix epsilon=0.${e%%s*} slack=1 wait=${w}ms;" ;;
        *) echo "${directive[$1]}" ;;
    esac
}

port_of() {
    local i=10 m
    for m in $methods; do
        [ "$m" = "$1" ] && { echo $((base + i)); return; }
        i=$((i + 1))
    done
}
plain_port=$((base + 19))

upstream() {    # upstream NAME DIRECTIVE: the four replicas
    local r
    echo "    upstream $1 {"
    [ -z "$2" ] || echo "        $2"
    for r in 0 1 2 3; do echo "        server 127.0.0.1:$((base + r));"; done
    echo "        keepalive 64;"
    echo "    }"
}

write_conf() {
    local m
    {
        echo "    client_body_buffer_size 64k;"
        for m in $methods; do
            [ "$m" = oracle ] || upstream "m_$m" "$(directive_of "$m")"
        done
        for m in $methods; do
            [ "$m" = oracle ] && continue
            cat <<EOC
    server {
        listen 127.0.0.1:$(port_of "$m");
        location /v1/ {
            llm_gateway on;
            proxy_pass http://m_$m;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_429 http_503 non_idempotent;
        }
        location = /metrics {
            llm_metrics;
        }
    }
EOC
        done
        # the overhead's A: plain nginx, round robin, no gateway
        upstream m_plain ""
        cat <<EOC
    server {
        listen 127.0.0.1:$plain_port;
        location /v1/ {
            proxy_pass http://m_plain;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOC
    } | nginx_conf "$dir" 1
}

# a fresh nginx: no cool-down, EWMA or counts carried from the last
# scenario (a reload would keep the balancers' shared memory)
restart_nginx() {
    local m ports=()
    nginx_stop "$dir"
    for m in $methods; do
        [ "$m" = oracle ] || ports+=("$(port_of "$m")")
    done
    nginx_start "$dir" "${ports[@]}" "$plain_port"
}

start_replicas() {  # start_replicas SCENARIO
    local args
    mapfile -t args < <(python3 "$root/bench/traces/gen.py" mock-args "$1" \
        --base-port "$base" --prefill-us "$prefill_us" --cache-blocks "$blocks")
    mock_start "${args[@]}" "${mock_opts[@]}"
}

reset_replicas() {
    local r
    for r in 0 1 2 3; do
        curl -sf -m 5 -X POST "http://127.0.0.1:$((base + r))/mock/reset" \
            > /dev/null || bench_die "replica $r does not reset"
    done
}

# run_one TRACE METHOD SLO: loadgen's RESULT line into results/
run_one() {
    local trace=$1 m=$2 slo_ms=$3 targets=() r
    if [ "$m" = oracle ]; then
        for r in 0 1 2 3; do targets+=(--target "127.0.0.1:$((base + r))"); done
        targets+=(--oracle)
    else
        targets=(--target "127.0.0.1:$(port_of "$m")")
    fi
    reset_replicas
    "$loadgen" "${targets[@]}" --trace "$dir/traces/$trace" --rate "$rate" \
        --seed "$seed" --slo-ms "$slo_ms" --timeout-ms 10000 --replicas 4 \
        --quiet \
        | grep '^RESULT' | sed 's/^RESULT //'
}

field() {   # field FILE NAME
    tr ' ' '\n' < "$1" | sed -n "s/^$2=//p"
}

row() {     # row METHOD FILE
    local f=$2
    printf '  %-12s %5s %5s %7s %8s %8s %8s %6s %6s %7s %7s  %s\n' "$1" \
        "$(field "$f" requests)" "$(field "$f" errors)" \
        "$(field "$f" hit_rate)" "$(field "$f" ttft_p50_ms)" \
        "$(field "$f" ttft_p90_ms)" "$(field "$f" goodput)" \
        "$(field "$f" max_inflight)" "$(field "$f" mean_inflight)" \
        "$(field "$f" placed_over)/$(field "$f" placed_excess)" \
        "$(field "$f" replica_over)/$(field "$f" replica_excess)" \
        "$(field "$f" instances)"
}

# -- traces ------------------------------------------------------------------

mkdir -p "$dir/traces" "$dir/results"
rm -f "$dir"/results/*
gen() { python3 "$root/bench/traces/gen.py" trace "$@"; }
gen shared --requests "$requests" > "$dir/traces/shared"
gen nosharing --requests "$requests" > "$dir/traces/nosharing"
gen zipf --requests "$requests" > "$dir/traces/zipf"

write_conf
"$nginx" -t -q -p "$dir" -c conf/nginx.conf \
    || bench_die "nginx -t failed on $dir/conf/nginx.conf"

echo "bench-balance: 4 mock replicas (prefill $prefill_us us per uncached" \
     "token, $blocks cache blocks of 16 tokens, 8 tokens at 5 ms), nginx 1" \
     "worker, loadgen open loop: Poisson $rate/s, seed $seed, $requests" \
     "requests a trace; goodput = req/s without error and TTFT <= $slo ms" \
     "($slo_cold ms on nosharing); in flight per replica from the client;" \
     "over/ex: arrivals placed on a replica holding more than" \
     "ceil(1.25 x mean in flight per replica then) + 1, largest excess," \
     "counted by the client (arrival to last byte); rep/ex: the same at" \
     "the replica, own > ceil(1.25 x total / 4) + 1 from the mock's" \
     "x-mock-inflight own/total at each arrival (request read to last" \
     "byte queued)"

for scenario in $scenarios; do
    trace=$scenario slo_ms=$slo mock=normal
    case $scenario in
        shared|zipf) ;;
        nosharing) slo_ms=$slo_cold ;;
        slow) trace=shared mock=slow ;;
        429)  trace=shared mock=429 ;;
        *) bench_die "unknown scenario $scenario" ;;
    esac
    start_replicas "$mock"
    restart_nginx
    case $scenario in
        slow) echo "trace shared, replica r3 150 ms slower to first token, 3x ITL:" ;;
        429)  echo "trace shared, replica r3 answers 429 Retry-After: 2" \
                   "(proxy_next_upstream http_429; the oracle has no failover):" ;;
        *)    echo "trace $scenario:" ;;
    esac
    printf '  %-12s %5s %5s %7s %8s %8s %8s %6s %6s %7s %7s  %s\n' method \
        reqs errs hitrate p50_ms p90_ms goodput maxinf meaninf over/ex \
        rep/ex \
        "requests per replica"
    for m in $methods; do
        run_one "$trace" "$m" "$slo_ms" > "$dir/results/$scenario.$m"
        row "$m" "$dir/results/$scenario.$m"
    done
    # wait=: how the holds ended, from the group's own counters
    for m in $methods; do
        case $m in prefix_w*|prefix_s1w*) ;; *) continue ;; esac
        curl -sf -m 5 "http://127.0.0.1:$(port_of "$m")/metrics" \
            | awk -v u="m_$m" -v m="$m" '
                index($0, "llm_balancer_waits_total{upstream=\"" u "\"") == 1 {
                    o = $0; sub(/.*outcome="/, "", o); sub(/".*/, "", o)
                    n[o] = $2 }
                END { printf "  %-12s held %d: home %d, spill %d\n", m,
                             n["home"] + n["spill"], n["home"], n["spill"] }'
    done
done

# -- the goals of issue 5 ------------------------------------------------------

val() {     # val SCENARIO METHOD FIELD ("" when not measured)
    [ -s "$dir/results/$1.$2" ] && field "$dir/results/$1.$2" "$3" || true
}

goal() {    # goal LABEL VALUE GOAL_TEXT OK(0/1)
    case $2 in
        n/a*) printf '  %-58s %s\n' "$1" "n/a (reference method not run)" ;;
        *) printf '  %-58s %-14s %s\n' "$1" "$2" \
               "$3 $( [ "$4" = 1 ] && echo met || echo 'NOT met')" ;;
    esac
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "n/a" && a >= b) ? 1 : 0 }'; }

echo "goals (issue 5):"
for m in $methods; do
    case $m in prefix*) ;; *) continue ;; esac
    if [ -n "$(val shared "$m" hit_rate)" ]; then
        x=$(ratio "$(val shared "$m" hit_rate)" "$(val shared rr hit_rate)")
        goal "$m: shared hit rate / round robin" "${x}x" ">= 3.5x:" "$(ge "$x" 3.5)"
        x=$(ratio "$(val shared "$m" hit_rate)" "$(val shared oracle hit_rate)")
        goal "$m: shared hit rate / oracle" "$x" ">= 0.90:" "$(ge "$x" 0.9)"
        x=$(ratio "$(val shared "$m" goodput)" "$(val shared least_conn goodput)")
        goal "$m: shared goodput / least_conn" "${x}x" ">= 1.5x:" "$(ge "$x" 1.5)"
    fi
    if [ -n "$(val nosharing "$m" goodput)" ]; then
        x=$(ratio "$(val nosharing "$m" goodput)" "$(val nosharing least_conn goodput)")
        goal "$m: no-sharing goodput / least_conn" "$x" "within 5 %:" \
            "$(awk -v x="$x" 'BEGIN { print (x >= 0.95 && x <= 1.05) ? 1 : 0 }')"
    fi
    if [ -n "$(val zipf "$m" max_inflight)" ]; then
        mx=$(val zipf "$m" max_inflight) mean=$(val zipf "$m" mean_inflight)
        lim=$(awk -v m="$mean" 'BEGIN { x = 1.25 * m; c = int(x); if (c < x) c++; print c + 1 }')
        goal "$m: zipf max in flight (least_conn: $(val zipf least_conn max_inflight))" \
            "$mx <= $lim" "ceil(1.25 x $mean) + 1:" \
            "$( [ "$mx" -le "$lim" ] && echo 1 || echo 0)"
        o=$(val zipf "$m" placed_over) x=$(val zipf "$m" placed_excess)
        goal "$m: zipf placements above the bound, client (least_conn: $(val zipf least_conn placed_over))" \
            "$o (excess $x)" "ceil(1.25 x mean now) + 1, 0:" \
            "$( [ "$o" = 0 ] && echo 1 || echo 0)"
        o=$(val zipf "$m" replica_over) x=$(val zipf "$m" replica_excess)
        goal "$m: zipf arrivals above the bound at the replica (least_conn: $(val zipf least_conn replica_over))" \
            "$o (excess $x)" "ceil(1.25 x total / 4) + 1, 0:" \
            "$( [ "$o" = 0 ] && echo 1 || echo 0)"
    fi
done
if ls "$dir"/results/429.* > /dev/null 2>&1; then
    for m in $methods; do
        [ "$m" = oracle ] && continue
        e=$(val 429 "$m" errors)
        goal "$m: client errors on the 429 trace" "$e" "0:" \
            "$( [ "$e" = 0 ] && echo 1 || echo 0)"
    done
fi

# -- balancing overhead on a zero-work mock -------------------------------------

[ "$rounds" -gt 0 ] || exit 0
mock_start $(for r in 0 1 2 3; do echo --listen "127.0.0.1:$((base + r)),name=r$r"; done) \
    --tokens 4
restart_nginx
printf '%s' '{"model":"mock","max_tokens":4,"messages":[{"role":"user","content":"Write a haiku about NGINX."}]}' \
    > "$dir/small.json"
specs=("plain=wrk_post $plain_port $dir/small.json $secs 32 | cut -d' ' -f1")
for m in $methods; do
    case $m in oracle|least_conn|random2) continue ;; esac
    p=$(port_of "$m")
    [ -n "$p" ] && specs+=("$m=wrk_post $p $dir/small.json $secs 32 | cut -d' ' -f1")
done
echo "overhead, zero-work mock, non-streaming, wrk 32 connections, 1 nginx" \
     "worker, $rounds rounds x ${secs}s alternating (plain = proxy_pass" \
     "round robin without the gateway; the others with llm_gateway on):"
ab_rounds "$rounds" "${specs[@]}"
line="  mean / plain:"
for s in "${specs[@]}"; do
    m=${s%%=*}
    [ "$m" = plain ] && continue
    line+=$(printf ' %s %.3f' "$m" "$(ratio "${AB_MEAN[$m]}" "${AB_MEAN[plain]}")")
done
echo "$line"
if [ -n "${AB_MEAN[rr]:-}" ]; then
    line="  mean / gateway rr:"
    for s in "${specs[@]}"; do
        m=${s%%=*}
        case $m in plain|rr) continue ;; esac
        line+=$(printf ' %s %.3f' "$m" "$(ratio "${AB_MEAN[$m]}" "${AB_MEAN[rr]}")")
    done
    echo "$line (goal: llm_balance >= 0.97 of plain proxy_pass)"
fi
