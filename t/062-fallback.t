# Fallback chain (issue 5): a failed upstream group (nginx's 502 / 504, or
# an upstream 429 / 5xx before any byte reached the client) moves the
# request to the named location of llm_fallback, with model= written into
# the forwarded body (the mock echoes what it received), up to four hops;
# then a stale cache entry (llm_fallback_stale), then the configured
# answer (llm_fallback_template) in the client API's shape. $llm_tier and
# x-llm-fallback say which tier answered; client errors never fall back;
# an operator's own error_page is left alone; nginx -t rejects unknown
# named locations, loops and chains longer than four hops.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
no_long_string();

our $M = $ENV{TEST_NGINX_MOCK_PORT};
our $A = $ENV{TEST_NGINX_MOCK_A};

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    llm_cache_zone fb062:1m;
    llm_metrics_zone m062:1m;
_EOC_
    }

    if (defined $block->config && !defined $block->must_die) {
        $block->set_value("config", <<"_EOC_" . $block->config . <<"_EOC2_");
    llm_gateway on;
    add_header x-tier \$llm_tier always;
    add_header x-served \$llm_served_model always;
_EOC_
    location = /metrics {
        llm_gateway off;
        llm_metrics;
    }
    location /sleep {
        llm_gateway off;
        echo_sleep 1.5;
        echo slept;
    }
_EOC2_
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers", "Content-Type: application/json");
    }

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: an upstream 503 falls back to @fb with the model rewritten
--- config
    location /v1/ {
        llm_fallback @fb model=m-fb;
        proxy_set_header x-mock-status 503;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        proxy_set_header x-mock-echo 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- request
POST /v1/chat/completions
{"model":"m-primary","messages":[{"role":"user","content":"one"}]}
--- error_code: 200
--- response_headers
x-llm-fallback: fallback
x-tier: fallback
x-served: m-fb
x-mock-instance: a
--- response_body_like eval
qr/^\{"model":"m-fb","messages":\[\{"role":"user","content":"one"\}\]\}$/
--- error_log
llm fallback: upstream group failed (503), trying @fb (hop 1)



=== TEST 2: connection refused (nginx's own 502) falls back, the body forwarded again
--- config
    location /v1/ {
        llm_fallback @fb;
        proxy_pass http://127.0.0.1:1;
    }
    location @fb {
        proxy_set_header x-mock-echo 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- request
POST /v1/chat/completions
{"model":"m-primary","messages":[{"role":"user","content":"two"}]}
--- error_code: 200
--- response_headers
x-llm-fallback: fallback
x-tier: fallback
x-served: m-primary
--- response_body_like eval
qr/"content":"two"/
--- error_log
llm fallback: upstream group failed (502), trying @fb (hop 1)



=== TEST 3: 429 and 529 fall back too, a real answer comes from @fb
--- config
    location /v1/ {
        llm_fallback @fb model=m-fb;
        proxy_set_header x-mock-status $http_x_fail;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        proxy_set_header x-mock-status "";
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"3\"}]}",
"POST /v1/messages
{\"model\":\"m\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"3\"}]}"]
--- more_headers eval
["Content-Type: application/json\nx-fail: 429",
 "Content-Type: application/json\nx-fail: 529"]
--- error_code eval
[200, 200]
--- response_headers eval
["x-llm-fallback: fallback\nx-mock-instance: a\nx-served: m-fb",
 "x-llm-fallback: fallback\nx-mock-instance: a\nx-served: m-fb"]
--- response_body_like eval
[qr/"object":"chat\.completion".*"model":"m-fb"/, qr/"type":"message".*"model":"m-fb"/]
--- error_log eval
qr/llm fallback: upstream group failed \((429|529)\), trying \@fb \(hop 1\)/



=== TEST 4: a chain of two hops, each with its model, streaming
--- config
    location /v1/ {
        llm_fallback @a model=m-a;
        proxy_set_header x-mock-status 503;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @a {
        llm_fallback @b model=m-b;
        proxy_set_header x-mock-status 500;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @b {
        proxy_set_header x-mock-status "";
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"four"}]}
--- error_code: 200
--- response_headers
x-llm-fallback: fallback
x-served: m-b
x-mock-instance: a
Content-Type: text/event-stream
--- response_body_like eval
qr/"model":"m-b".*data: \[DONE\]\n\n$/s
--- error_log
llm fallback: upstream group failed (503), trying @a (hop 1)
llm fallback: upstream group failed (500), trying @b (hop 2)



=== TEST 5: no fallback when the primary answers; no header
--- config
    location /v1/ {
        llm_fallback @fb;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        return 500;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"fine"}]}
--- error_code: 200
--- response_headers
!x-llm-fallback
x-tier: primary
x-mock-instance: mock
--- no_error_log
llm fallback



=== TEST 6: client errors from upstream (400, 401, 404) do not fall back
--- config
    location /v1/ {
        llm_fallback @fb;
        llm_fallback_template "never";
        proxy_set_header x-mock-status $http_x_fail;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        return 200 "fallback\n";
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
"POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"]
--- more_headers eval
["Content-Type: application/json\nx-fail: 400",
 "Content-Type: application/json\nx-fail: 401",
 "Content-Type: application/json\nx-fail: 404"]
--- error_code eval
[400, 401, 404]
--- response_headers eval
["!x-llm-fallback\nx-tier: primary", "!x-llm-fallback\nx-tier: primary",
 "!x-llm-fallback\nx-tier: primary"]
--- response_body_like eval
[qr/"error"/, qr/"error"/, qr/"error"/]
--- no_error_log
llm fallback



=== TEST 7: an operator's own error_page works where llm_fallback is not set
--- config
    location /v1/ {
        error_page 502 = @mine;
        proxy_pass http://127.0.0.1:1;
    }
    location @mine {
        return 200 "mine\n";
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"x"}]}
--- error_code: 200
--- response_headers
!x-llm-fallback
--- response_body
mine
--- no_error_log
llm fallback



=== TEST 8: template, OpenAI JSON, after the chain's last hop failed too
--- config
    llm_fallback_template "Busy \"now\", try later.";
    location /v1/ {
        llm_fallback @fb;
        proxy_set_header x-mock-status 503;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        proxy_pass http://127.0.0.1:1;
    }
--- request
POST /v1/chat/completions
{"model":"m8","messages":[{"role":"user","content":"x"}]}
--- error_code: 200
--- response_headers
x-llm-fallback: template
x-tier: template
Content-Type: application/json
--- response_body_like eval
qr/^\{"id":"chatcmpl-llm-fallback","object":"chat\.completion","created":\d+,"model":"m8","system_fingerprint":"llm-fallback-template","choices":\[\{"index":0,"message":\{"role":"assistant","content":"Busy \\"now\\", try later\."\},"finish_reason":"stop"\}\],"usage":\{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0\}\}$/
--- error_log
llm fallback: upstream group failed (503), trying @fb (hop 1)
llm fallback: serving template



=== TEST 9: template, OpenAI SSE, status=
--- config
    location /v1/ {
        llm_fallback_template "Down." status=503;
        proxy_pass http://127.0.0.1:1;
    }
--- request
POST /v1/chat/completions
{"model":"m9","stream":true,"messages":[{"role":"user","content":"x"}]}
--- error_code: 503
--- response_headers
x-llm-fallback: template
Content-Type: text/event-stream
--- response_body_like eval
qr/^data: \{"id":"chatcmpl-llm-fallback","object":"chat\.completion\.chunk",.*"model":"m9",.*"delta":\{"role":"assistant","content":"Down\."\}.*\n\ndata: \{.*"finish_reason":"stop"\}\]\}\n\ndata: \[DONE\]\n\n$/s
--- error_log
llm fallback: serving template



=== TEST 10: template, Anthropic JSON and SSE, from a file
--- config
    location /v1/ {
        llm_fallback_template file=../html/busy.txt;
        proxy_set_header x-mock-status 529;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- user_files
>>> busy.txt
Overloaded,
come back soon.
--- request eval
["POST /v1/messages
{\"model\":\"claude-x\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
"POST /v1/messages
{\"model\":\"claude-x\",\"max_tokens\":8,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"]
--- error_code eval
[200, 200]
--- response_headers eval
["x-llm-fallback: template\nContent-Type: application/json",
 "x-llm-fallback: template\nContent-Type: text/event-stream"]
--- response_body_like eval
[qr/^\{"id":"msg_llm_fallback","type":"message","role":"assistant","model":"claude-x","content":\[\{"type":"text","text":"Overloaded,\\ncome back soon\."\}\],"stop_reason":"end_turn"/,
 qr/^event: message_start\n.*event: content_block_delta\ndata: \{"type":"content_block_delta","index":0,"delta":\{"type":"text_delta","text":"Overloaded,\\ncome back soon\."\}\}\n\n.*event: message_stop\ndata: \{"type":"message_stop"\}\n\n$/s]



=== TEST 11: stale tier: an expired entry answers when the chain ends in failure, else the template
--- config
    llm_fallback_stale on;
    llm_fallback_template "template, not stale";
    location /v1/ {
        llm_cache fb062;
        llm_cache_valid 1s;
        llm_fallback @fb;
        proxy_set_header x-mock-status $http_x_fail;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        proxy_pass http://127.0.0.1:1;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"k11\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"eleven\"}]}",
"GET /sleep",
"POST /v1/chat/completions
{\"model\":\"k11\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"eleven\"}]}",
"POST /v1/chat/completions
{\"model\":\"k11\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"other\"}]}"]
--- more_headers eval
["Content-Type: application/json", "",
 "Content-Type: application/json\nx-fail: 503",
 "Content-Type: application/json\nx-fail: 503"]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["x-tier: primary", "", "x-llm-fallback: stale\nx-tier: stale",
 "x-llm-fallback: template\nx-tier: template"]
--- response_body_like eval
[qr/"object":"chat\.completion"/, qr/slept/,
 qr/^\{"id":"chatcmpl-\w+","object":"chat\.completion".*"model":"k11"/,
 qr/"content":"template, not stale"/]



=== TEST 12: metrics: llm_fallback_total by tier, llm_fallback_hops_total
--- config
    location /v1/chat/ {
        llm_fallback @fb;
        proxy_set_header x-mock-status 503;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        llm_fallback_template "t";
        proxy_pass http://127.0.0.1:1;
    }
    location /v1/messages {
        llm_fallback @fb2;
        proxy_set_header x-mock-status 502;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb2 {
        proxy_set_header x-mock-status "";
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
"POST /v1/messages
{\"model\":\"m\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
"GET /metrics"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/llm-fallback/, qr/"type":"message"/,
 qr/# TYPE llm_fallback_total counter\nllm_fallback_total\{tier="fallback"\} 1\nllm_fallback_total\{tier="stale"\} 0\nllm_fallback_total\{tier="template"\} 1\n# HELP llm_fallback_hops_total [^\n]+\n# TYPE llm_fallback_hops_total counter\nllm_fallback_hops_total 2\n/]



=== TEST 13: an unknown named location is rejected with its file:line
--- config
    location /v1/ {
        llm_fallback @nowhere;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*llm_fallback: no named location "\@nowhere" in the server in .*nginx\.conf:\d+/



=== TEST 14: a loop is rejected
--- config
    location /v1/ {
        llm_fallback @a;
    }
    location @a {
        llm_fallback @b;
    }
    location @b {
        llm_fallback @a;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*llm_fallback: the chain through "\@\w" comes back to a location it went through in .*nginx\.conf:\d+/



=== TEST 15: a location naming itself is a loop
--- config
    location @a {
        llm_fallback @a;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*llm_fallback: the chain through "\@a" comes back to a location it went through in .*nginx\.conf:\d+/



=== TEST 16: more than four hops are rejected
--- config
    location /v1/ { llm_fallback @a; }
    location @a { llm_fallback @b; }
    location @b { llm_fallback @c; }
    location @c { llm_fallback @d; }
    location @d { llm_fallback @e; }
    location @e { return 500; }
--- must_die
--- error_log eval
qr/\[emerg\] .*llm_fallback: the chain through "\@a" is longer than 4 hops in .*nginx\.conf:\d+/



=== TEST 17: llm_fallback needs a named location
--- config
    location /v1/ {
        llm_fallback /other;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_fallback" needs a named location \("\@name"\), not "\/other" in .*nginx\.conf:\d+/



=== TEST 18: llm_fallback_template checks its status and its file
--- config
    location /v1/ {
        llm_fallback_template "x" status=99;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_fallback_template" status must be between 200 and 599, not "status=99" in .*nginx\.conf:\d+/



=== TEST 19: llm_fallback_template file= must exist
--- config
    location /v1/ {
        llm_fallback_template file=/nonexistent/busy.txt;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*open\(\) "\/nonexistent\/busy\.txt" failed .* in .*nginx\.conf:\d+/



=== TEST 20: llm_fallback_stale takes on or off
--- config
    location /v1/ {
        llm_fallback_stale maybe;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "maybe" in "llm_fallback_stale" directive, it must be "on" or "off" in .*nginx\.conf:\d+/



=== TEST 21: a timeout (nginx's own 504) falls back, Anthropic stream from @fb
--- config
    location /v1/ {
        llm_fallback @fb;
        proxy_read_timeout 300ms;
        proxy_set_header x-mock-fault hang-headers;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        proxy_set_header x-mock-fault "";
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- request
POST /v1/messages
{"model":"claude-x","max_tokens":4,"stream":true,"messages":[{"role":"user","content":"slow"}]}
--- error_code: 200
--- response_headers
x-llm-fallback: fallback
x-tier: fallback
x-mock-instance: a
--- response_body_like eval
qr/^event: message_start\n.*event: message_stop\n/s
--- error_log
llm fallback: upstream group failed (504), trying @fb (hop 1)



=== TEST 22: a nested location inherits llm_fallback
--- config
    location /v1/ {
        llm_fallback @fb model=m-nested;
        location /v1/chat/ {
            proxy_pass http://127.0.0.1:1;
        }
    }
    location @fb {
        proxy_set_header x-mock-echo 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"nested"}]}
--- error_code: 200
--- response_headers
x-llm-fallback: fallback
x-served: m-nested
--- response_body_like eval
qr/^\{"model":"m-nested","messages"/
--- error_log
llm fallback: upstream group failed (502), trying @fb (hop 1)



=== TEST 23: the last hop failing with no stale entry nor template gives the API-shaped error
--- config
    location /v1/ {
        llm_fallback @fb;
        proxy_set_header x-mock-status 503;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        proxy_pass http://127.0.0.1:1;
    }
--- request
POST /v1/messages
{"model":"claude-x","max_tokens":4,"messages":[{"role":"user","content":"x"}]}
--- error_code: 502
--- response_headers
Content-Type: application/json
x-tier: fallback
--- response_body_like eval
qr/^\{"type":"error","error":\{"type":"api_error","message":"the upstream LLM server could not be reached/
--- error_log
llm fallback: upstream group failed (503), trying @fb (hop 1)



=== TEST 24: a GET through a location with llm_fallback follows the error_page, no tier
--- config
    location /v1/ {
        llm_fallback @fb;
        proxy_pass http://127.0.0.1:1;
    }
    location @fb {
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- request
GET /v1/models
--- error_code: 200
--- response_headers
!x-llm-fallback
x-mock-instance: a
--- no_error_log
llm fallback



=== TEST 25: a body kept in a temporary file is forwarded again whole, with and without model=
--- config
    client_body_buffer_size 8k;
    location /v1/ {
        llm_fallback @fb;
        proxy_set_header x-mock-status 503;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location /m/ {
        llm_fallback @fb model=m-big;
        rewrite ^/m(/.*)$ $1 break;
        proxy_set_header x-mock-status 503;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        proxy_set_header x-mock-status "";
        proxy_set_header x-mock-echo 1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\""
 . ('x' x 100000) . "\"}]}",
"POST /m/v1/chat/completions
{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\""
 . ('x' x 100000) . "\"}]}"]
--- error_code eval
[200, 200]
--- response_headers eval
["x-llm-fallback: fallback\nx-mock-body-bytes: 100055",
 "x-llm-fallback: fallback\nx-mock-body-bytes: 100059"]
--- response_body_like eval
[qr/^\{"model":"m","messages":\[\{"role":"user","content":"x+"\}\]\}$/,
 qr/^\{"model":"m-big","messages":\[\{"role":"user","content":"x+"\}\]\}$/]



=== TEST 26: llm_cache_use_stale covering the status answers before any hop
--- config
    location /v1/ {
        llm_cache fb062;
        llm_cache_valid 1s;
        llm_cache_use_stale http_503;
        llm_fallback @fb;
        proxy_set_header x-mock-status $http_x_fail;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    location @fb {
        return 500;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"k26\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"26\"}]}",
"GET /sleep",
"POST /v1/chat/completions
{\"model\":\"k26\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"26\"}]}"]
--- more_headers eval
["Content-Type: application/json", "",
 "Content-Type: application/json\nx-fail: 503"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["x-tier: primary", "", "x-llm-fallback: stale\nx-tier: stale\nX-Cache-Status: STALE"]
--- response_body_like eval
[qr/"object":"chat\.completion"/, qr/slept/, qr/"model":"k26"/]
--- no_error_log
llm fallback
