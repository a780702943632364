# Response cache (L1): identical concurrent misses make one upstream call
# (JSON and streams), expiry, stale-if-error, and paced SSE replay.
# Concurrency comes from echo_location_async subrequests that proxy back
# to the gateway; /stats of the mock counts the upstream calls.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

no_shuffle();
no_long_string();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    upstream mock {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
    }
    llm_cache_zone llm:1m;
_EOC_
    }

    my $config = $block->config // '';
    $block->set_value("config", $config . <<'_EOC_');
    location = /reset { proxy_method POST; proxy_pass http://mock/mock/reset; }
    location = /stats { proxy_pass http://mock/stats; }
    location /sleep { echo_sleep 1.5; echo slept; }
_EOC_

    if (!defined $block->more_headers) {
        $block->set_value("more_headers", "Content-Type: application/json\n");
    }
});

run_tests();

__DATA__

=== TEST 1: four identical concurrent JSON misses, one upstream call
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        proxy_pass http://mock;
    }
    location = /fan {
        echo_location_async /one;
        echo_location_async /one;
        echo_location_async /one;
        echo_location_async /one;
    }
    location = /one {
        internal;
        proxy_method POST;
        proxy_set_header Content-Type application/json;
        proxy_set_header x-mock-ttft-ms 300;
        proxy_set_body '{"model":"k1","temperature":0,"messages":[{"role":"user","content":"same"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
--- request eval
["POST /reset", "GET /fan", "GET /stats"]
--- response_body_like eval
[qr/./,
 qr/^(?:\{"id":"chatcmpl-\w+","object":"chat\.completion"[^\n]*"content":"(?:\w+ ){16}"[^\n]*\}){4}$/,
 qr/"requests_total":1,/]



=== TEST 2: four identical concurrent streams, one upstream call
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        proxy_pass http://mock;
    }
    location = /fan {
        echo_location_async /one;
        echo_location_async /one;
        echo_location_async /one;
        echo_location_async /one;
    }
    location = /one {
        internal;
        proxy_method POST;
        proxy_set_header Content-Type application/json;
        proxy_set_header x-mock-ttft-ms 200;
        proxy_set_body '{"model":"k2","temperature":0,"stream":true,"messages":[{"role":"user","content":"same"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
--- request eval
["POST /reset", "GET /fan", "GET /stats"]
--- response_body_like eval
[qr/./,
 qr/^(?:data: \{"id":"chatcmpl-\w+".*?data: \[DONE\]\n\n){4}$/s,
 qr/"requests_total":1,/]



=== TEST 2b: the three requests served after the leader count as
coalesced in the metrics
--- http_config eval
"upstream mock { server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}; }
llm_cache_zone llm:1m;
llm_metrics_zone m:256k;"
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        proxy_pass http://mock;
    }
    location = /metrics {
        llm_metrics;
    }
    location = /fan {
        echo_location_async /one;
        echo_location_async /one;
        echo_location_async /one;
        echo_location_async /one;
    }
    location = /one {
        internal;
        proxy_method POST;
        proxy_set_header Content-Type application/json;
        proxy_set_header x-mock-ttft-ms 300;
        proxy_set_body '{"model":"k9","temperature":0,"messages":[{"role":"user","content":"same again"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
--- request eval
["POST /reset", "GET /fan", "GET /metrics"]
--- response_body_like eval
[qr/./,
 qr/^(?:\{"id":"chatcmpl-\w+","object":"chat\.completion"[^\n]*\}){4}$/,
 qr/llm_cache_requests_total\{[^}]*model="k9"[^}]*status="coalesced"[^}]*\} 3\n/]



=== TEST 3: llm_cache_lock off: every miss goes upstream
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_lock off;
        proxy_pass http://mock;
    }
    location = /fan {
        echo_location_async /one;
        echo_location_async /one;
        echo_location_async /one;
    }
    location = /one {
        internal;
        proxy_method POST;
        proxy_set_header Content-Type application/json;
        proxy_set_header x-mock-ttft-ms 200;
        proxy_set_body '{"model":"k3","temperature":0,"messages":[{"role":"user","content":"same"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
--- request eval
["POST /reset", "GET /fan", "GET /stats"]
--- response_body_like eval
[qr/./, qr/chat\.completion/, qr/"requests_total":3,/]



=== TEST 4: a waiter whose leader fails becomes the leader (lock timeout bounded)
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_lock_timeout 5s;
        proxy_pass http://mock;
    }
    location = /fan {
        echo_location_async /bad;
        echo_sleep 0.05;
        echo_location_async /good;
    }
    location = /bad {
        internal;
        proxy_method POST;
        proxy_set_header Content-Type application/json;
        proxy_set_header x-mock-ttft-ms 200;
        proxy_set_header x-mock-status 503;
        proxy_set_body '{"model":"k4","temperature":0,"messages":[{"role":"user","content":"same"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /good {
        internal;
        proxy_method POST;
        proxy_set_header Content-Type application/json;
        proxy_set_body '{"model":"k4","temperature":0,"messages":[{"role":"user","content":"same"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
--- request eval
["POST /reset", "GET /fan", "GET /stats"]
--- response_body_like eval
[qr/./, qr/"error".*chat\.completion"/s, qr/"requests_total":2,/]



=== TEST 5: expired entries refresh; stale on error, 5xx and 429 as configured
Valid 2 s, a 2.5 s pause: the entry expires; the refresh (7th request)
is a hit for the 8th (2 s of margin on a loaded machine; 1 s was not
always enough in CI).
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_valid 2s;
        llm_cache_use_stale error http_500 http_429;
        proxy_pass http://mock;
    }
    location /dead/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_use_stale error;
        proxy_pass http://127.0.0.1:18599/;
    }
    location = /sleep2 {
        echo_sleep 2.5;
        echo slept;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"k5\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"five\"}]}",
"GET /sleep2",
"POST /v1/chat/completions
{\"model\":\"k5\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"five\"}]}",
"POST /v1/chat/completions
{\"model\":\"k5\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"five\"}]}",
"POST /v1/chat/completions
{\"model\":\"k5\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"five\"}]}",
"POST /dead/v1/chat/completions
{\"model\":\"k5\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"five\"}]}",
"POST /v1/chat/completions
{\"model\":\"k5\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"five\"}]}",
"POST /v1/chat/completions
{\"model\":\"k5\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"five\"}]}"]
--- more_headers eval
["Content-Type: application/json", "",
 "Content-Type: application/json\nx-mock-status: 500",
 "Content-Type: application/json\nx-mock-status: 429\nx-mock-retry-after: 3",
 "Content-Type: application/json\nx-mock-status: 503",
 "Content-Type: application/json",
 "Content-Type: application/json",
 "Content-Type: application/json"]
--- error_code eval
[200, 200, 200, 200, 503, 200, 200, 200]
--- response_headers eval
["X-Cache-Status: MISS", "", "X-Cache-Status: STALE\nContent-Type: application/json",
 "X-Cache-Status: STALE\nRetry-After:", "X-Cache-Status: EXPIRED",
 "X-Cache-Status: STALE", "X-Cache-Status: EXPIRED", "X-Cache-Status: HIT"]
--- response_body_like eval
[qr/chat\.completion/, qr/slept/, qr/^\{"id":"chatcmpl-\w+","object":"chat\.completion".*"content":"(\w+ ){16}"/,
 qr/"content":"(\w+ ){16}"/, qr/"error"/, qr/"content":"(\w+ ){16}"/,
 qr/chat\.completion/, qr/chat\.completion/]
--- timeout: 10



=== TEST 6: a stream asked while the entry is stale gets the stale stream
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_valid 1s;
        llm_cache_use_stale http_502;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/messages
{\"model\":\"k6\",\"max_tokens\":4,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"six\"}]}",
"GET /sleep",
"POST /v1/messages
{\"model\":\"k6\",\"max_tokens\":4,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"six\"}]}"]
--- more_headers eval
["Content-Type: application/json", "",
 "Content-Type: application/json\nx-mock-status: 502"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["X-Cache-Status: MISS", "", "X-Cache-Status: STALE\nContent-Type: text/event-stream"]
--- response_body_like eval
[qr/"type":"message"/, qr/slept/, qr/^event: message_start\n.*event: message_stop\ndata: \{"type":"message_stop"\}\n\n$/s]
--- timeout: 10



=== TEST 7: llm_cache_replay_rate paces a replayed stream with timers
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_replay_rate 40;
        proxy_pass http://mock;
    }
    location = /timed {
        echo_reset_timer;
        echo_location /one;
        echo "elapsed $echo_timer_elapsed";
    }
    location = /one {
        internal;
        proxy_method POST;
        proxy_set_header Content-Type application/json;
        proxy_set_body '{"model":"k7","temperature":0,"stream":true,"messages":[{"role":"user","content":"paced"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
--- request eval
["GET /timed", "GET /timed"]
--- response_body_like eval
[qr/\[DONE\]\n\n\s*elapsed 0\.[01]/s, qr/\[DONE\]\n\n\s*elapsed (?:0\.[3-9]|1\.)/s]
