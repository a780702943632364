# Response cache (L1): misses and hits in both forms (JSON and SSE) from one
# entry, tenant scopes, what is cacheable and what is stored, the request's
# Cache-Control, bypass / no-store conditions, $llm_cache_status, and the
# configurations nginx -t rejects.

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
        keepalive 8;
    }
    llm_cache_zone llm:1m;
    log_format llm 'llm-log cache=\$llm_cache_status key=\$llm_key_hash '
                   'completion=\$llm_completion_tokens '
                   'usage=\$llm_usage_source outcome=\$llm_outcome';
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        access_log logs/error.log llm;
        proxy_pass http://mock;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
_EOC_
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers", "Content-Type: application/json\n");
    }
});

run_tests();

__DATA__

=== TEST 1: a miss is stored, the same request then hits with Age
--- request eval
["POST /v1/chat/completions
{\"model\":\"t1\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}",
"POST /v1/chat/completions
{ \"messages\" : [{\"content\":\"one\",\"role\":\"user\"}], \"temperature\": 0.0, \"model\":\"t1\", \"user\":\"someone\" }"]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: HIT\nAge: 0\nContent-Type: application/json"]
--- response_body_like eval
[qr/"object":"chat\.completion".*"content":"(\w+ ){16}"/,
 qr/^\{"id":"chatcmpl-\w+","object":"chat\.completion","created":\d+,"model":"t1","choices":\[\{"index":0,"message":\{"role":"assistant","content":"(\w+ ){16}"\},"logprobs":null,"finish_reason":"length|stop"\}\],"usage":\{"prompt_tokens":\d+,"completion_tokens":16,/]
--- error_log eval
qr/llm-log cache=(?:MISS|HIT) key=- completion=16 usage=upstream outcome=complete/
--- no_error_log
[error]
usage=estimated



=== TEST 2: a stream fills the entry, a JSON request and a stream hit it
--- request eval
["POST /v1/chat/completions
{\"model\":\"t2\",\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}",
"POST /v1/chat/completions
{\"model\":\"t2\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}",
"POST /v1/chat/completions
{\"model\":\"t2\",\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}",
"POST /v1/chat/completions
{\"model\":\"t2\",\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: HIT\nContent-Type: application/json",
 "X-Cache-Status: HIT\nContent-Type: text/event-stream\nCache-Control: no-cache",
 "X-Cache-Status: HIT"]
--- response_body_like eval
[qr/^data: .*data: \[DONE\]\n\n$/s,
 qr/^\{"id":"chatcmpl-\w+","object":"chat\.completion",.*"content":"(\w+ ){16}"\},"logprobs":null,"finish_reason":"\w+"\}\],"usage":\{"prompt_tokens":\d+,"completion_tokens":16,/,
 qr/^data: \{"id":"chatcmpl-\w+","object":"chat\.completion\.chunk","created":\d+,"model":"t2","choices":\[\{"index":0,"delta":\{"role":"assistant","content":""\}.*"content":"(\w+ )+".*"finish_reason":"\w+"\}\]\}\n\ndata: \[DONE\]\n\n$/s,
 qr/"finish_reason":"\w+"\}\]\}\n\ndata: \{[^\n]*"choices":\[\],"usage":\{"prompt_tokens":\d+,"completion_tokens":16,[^\n]*\}\n\ndata: \[DONE\]\n\n$/s]
--- no_error_log
[error]



=== TEST 3: a JSON miss is replayed as a stream without the usage chunk
--- request eval
["POST /v1/chat/completions
{\"model\":\"t3\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"three\"}]}",
"POST /v1/chat/completions
{\"model\":\"t3\",\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"three\"}]}"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: HIT"]
--- response_body_unlike eval
[qr/^$/, qr/"usage"/]
--- response_body_like eval
[qr/chat\.completion/, qr/\[DONE\]\n\n$/]



=== TEST 4: callers do not see each other's entries
--- request eval
["POST /v1/chat/completions
{\"model\":\"t4\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"four\"}]}",
"POST /v1/chat/completions
{\"model\":\"t4\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"four\"}]}",
"POST /v1/chat/completions
{\"model\":\"t4\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"four\"}]}"]
--- more_headers eval
["Content-Type: application/json\nAuthorization: Bearer sk-alice",
 "Content-Type: application/json\nAuthorization: Bearer sk-bob",
 "Content-Type: application/json\nAuthorization: Bearer sk-alice"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: MISS", "X-Cache-Status: HIT"]



=== TEST 5: llm_cache_scope shared: another caller hits
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_scope shared;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"t5\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"five\"}]}",
"POST /v1/chat/completions
{\"model\":\"t5\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"five\"}]}"]
--- more_headers eval
["Content-Type: application/json\nAuthorization: Bearer sk-alice",
 "Content-Type: application/json\nAuthorization: Bearer sk-bob"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: HIT"]



=== TEST 6: llm_cache_scope with a variable
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_scope $http_x_team;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"t6\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"six\"}]}",
"POST /v1/chat/completions
{\"model\":\"t6\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"six\"}]}",
"POST /v1/chat/completions
{\"model\":\"t6\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"six\"}]}"]
--- more_headers eval
["Content-Type: application/json\nX-Team: red\nAuthorization: Bearer a",
 "Content-Type: application/json\nX-Team: red\nAuthorization: Bearer b",
 "Content-Type: application/json\nX-Team: blue\nAuthorization: Bearer a"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: HIT", "X-Cache-Status: MISS"]



=== TEST 7: not deterministic (no temperature, temperature 0.7, n 2): bypassed
--- request eval
["POST /v1/chat/completions
{\"model\":\"t7\",\"messages\":[{\"role\":\"user\",\"content\":\"seven\"}]}",
"POST /v1/chat/completions
{\"model\":\"t7\",\"messages\":[{\"role\":\"user\",\"content\":\"seven\"}]}",
"POST /v1/chat/completions
{\"model\":\"t7\",\"temperature\":0.7,\"messages\":[{\"role\":\"user\",\"content\":\"seven\"}]}",
"POST /v1/chat/completions
{\"model\":\"t7\",\"temperature\":0,\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"seven\"}]}"]
--- response_headers eval
["X-Cache-Status: BYPASS", "X-Cache-Status: BYPASS", "X-Cache-Status: BYPASS",
 "X-Cache-Status: BYPASS"]



=== TEST 8: llm_cache_deterministic off caches any temperature
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_deterministic off;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"t8\",\"messages\":[{\"role\":\"user\",\"content\":\"eight\"}]}",
"POST /v1/chat/completions
{\"model\":\"t8\",\"messages\":[{\"role\":\"user\",\"content\":\"eight\"}]}"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: HIT"]



=== TEST 9: Cache-Control no-cache refreshes, no-store does not store
--- request eval
["POST /v1/chat/completions
{\"model\":\"t9\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"nine\"}]}",
"POST /v1/chat/completions
{\"model\":\"t9\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"nine\"}]}",
"POST /v1/chat/completions
{\"model\":\"t9\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"nine\"}]}",
"POST /v1/chat/completions
{\"model\":\"t9\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"nine\"}]}"]
--- more_headers eval
["Content-Type: application/json\nCache-Control: no-store",
 "Content-Type: application/json\nCache-Control: no-cache",
 "Content-Type: application/json",
 "Content-Type: application/json\nCache-Control: max-age=0, no-cache"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: BYPASS", "X-Cache-Status: HIT",
 "X-Cache-Status: BYPASS"]



=== TEST 10: llm_cache_bypass and llm_cache_no_store
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache llm;
        llm_cache_bypass $http_x_fresh;
        llm_cache_no_store $http_x_private;
        proxy_pass http://mock;
    }
--- request eval
["POST /v1/chat/completions
{\"model\":\"t10\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"ten\"}]}",
"POST /v1/chat/completions
{\"model\":\"t10\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"ten\"}]}",
"POST /v1/chat/completions
{\"model\":\"t10\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"ten\"}]}",
"POST /v1/chat/completions
{\"model\":\"t10\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"ten\"}]}"]
--- more_headers eval
["Content-Type: application/json\nX-Private: 1",
 "Content-Type: application/json\nX-Fresh: 1",
 "Content-Type: application/json\nX-Fresh: 0",
 "Content-Type: application/json"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: BYPASS", "X-Cache-Status: HIT",
 "X-Cache-Status: HIT"]



=== TEST 11: partial and failed streams are never stored
--- request eval
["POST /v1/chat/completions
{\"model\":\"t11\",\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"eleven\"}]}",
"POST /v1/chat/completions
{\"model\":\"t11\",\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"eleven\"}]}",
"POST /v1/chat/completions
{\"model\":\"t11\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"eleven\"}]}",
"POST /v1/chat/completions
{\"model\":\"t11\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"eleven\"}]}"]
--- more_headers eval
["Content-Type: application/json\nx-mock-fault: close-mid-stream",
 "Content-Type: application/json\nx-mock-fault: sse-error\nx-mock-fault-after: 2",
 "Content-Type: application/json\nx-mock-status: 500",
 "Content-Type: application/json"]
--- error_code eval
[200, 200, 500, 200]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: MISS", "X-Cache-Status: MISS",
 "X-Cache-Status: MISS"]
--- ignore_response_body



=== TEST 12: Anthropic: a stream is stored and replayed in its own format
--- request eval
["POST /v1/messages
{\"model\":\"c12\",\"max_tokens\":8,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"twelve\"}]}",
"POST /v1/messages
{\"model\":\"c12\",\"max_tokens\":8,\"temperature\":0,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"twelve\"}]}",
"POST /v1/messages
{\"model\":\"c12\",\"max_tokens\":8,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"twelve\"}]}"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: HIT", "X-Cache-Status: HIT"]
--- response_body_like eval
[qr/event: message_stop/,
 qr/^event: message_start\ndata: \{"type":"message_start","message":\{"id":"msg_\w+".*event: content_block_start\n.*event: content_block_delta\n.*event: content_block_stop\n.*event: message_delta\ndata: \{"type":"message_delta","delta":\{"stop_reason":"max_tokens","stop_sequence":null\},"usage":\{"output_tokens":8\}\}\n\nevent: message_stop\ndata: \{"type":"message_stop"\}\n\n$/s,
 qr/^\{"id":"msg_\w+","type":"message","role":"assistant","model":"c12","content":\[\{"type":"text","text":"(\w+ ){8}"\}\],"stop_reason":"max_tokens","stop_sequence":null,"usage":\{"input_tokens":\d+,/]



=== TEST 13: embeddings are cached as they are
--- request eval
["POST /v1/embeddings
{\"model\":\"e13\",\"input\":\"thirteen\"}",
"POST /v1/embeddings
{\"model\":\"e13\",\"input\":\"thirteen\"}"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: HIT"]
--- response_body_like eval
[qr/"embedding"/, qr/"embedding"/]



=== TEST 14: llm_cache off in a nested location, GET passes untouched
--- config
    llm_cache llm;
    location /v1/ {
        llm_gateway on;
        proxy_pass http://mock;
        location /v1/messages {
            llm_gateway on;
            llm_cache off;
            proxy_pass http://mock;
        }
    }
--- request eval
["POST /v1/messages
{\"model\":\"c14\",\"max_tokens\":8,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
"GET /v1/models"]
--- response_headers eval
["!X-Cache-Status", "!X-Cache-Status"]



=== TEST 15: unknown zone
--- config
    location /v1/ { llm_gateway on; llm_cache nosuch; proxy_pass http://mock; }
--- must_die
--- error_log
zero size shared memory zone "nosuch"



=== TEST 16: zone parameters are checked
--- http_config
    llm_cache_zone llm:1m max_entry=900k;
--- config
--- must_die
--- error_log
max_entry 921600 is more than half of the zone size 1048576



=== TEST 17: zone needs name:size
--- http_config
    llm_cache_zone llm;
--- config
--- must_die
--- error_log
"llm_cache_zone" needs "name:size", not "llm"



=== TEST 18: llm_cache_scope needs key, shared or variables
--- config
    location /v1/ { llm_cache_scope team; }
--- must_die
--- error_log
"llm_cache_scope" must be "key", "shared" or a string with variables, not "team"



=== TEST 19: llm_cache_use_stale values are checked
--- config
    location /v1/ { llm_cache_use_stale http_418; }
--- must_die
--- error_log
invalid value "http_418"
