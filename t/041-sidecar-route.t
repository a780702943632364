# Module -> sidecar routing: the decision picks the upstream ($llm_upstream
# in proxy_pass) and the model sent upstream (the body is rewritten, its
# Content-Length kept right); decisions are cached in shared memory; a deny
# answers in the client API's error shape; a dead sidecar costs the static
# route (fail-open) or a 503 (fail=closed); budgets downgrade, then deny.

use FindBin; use lib $FindBin::Bin; use LLM; use Sidecar;
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
    upstream mock_b {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_B};
    }
    llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} timeout=300ms
                spool=llm_spool_041:1m decisions=llm_dec_041:1m;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
    llm_gateway on;
    llm_team \$http_x_team;

    location /v1/ {
        llm_route mock;
        add_header X-Route \$llm_route_status always;
        add_header X-Upstream \$llm_upstream always;
        add_header X-Served \$llm_served_model always;
        proxy_set_header x-mock-echo \$http_x_echo;
        proxy_pass http://\$llm_upstream;
    }

    location = /spend {
        echo_sleep \$arg_wait;
        echo_location /_spend "group_by=team&team=\$arg_team";
    }

    location = /_spend {
        llm_gateway off;
        proxy_pass http://unix:$ENV{TEST_NGINX_SIDECAR}:/v1/spend;
    }
_EOC_
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers",
                          "Content-Type: application/json\nX-Echo: 1\n"
                          . "X-Team: t041");
    }
});

run_tests();

__DATA__

=== TEST 1: "auto" is routed to the cheapest model; the body sent upstream names it, then the decision comes from the cache
--- request eval
["POST /v1/chat/completions
{\"model\":\"auto\",\"max_tokens\":999999,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"auto\",\"max_tokens\":999999,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Route: SIDECAR\nX-Upstream: mock\nX-Served: gpt-4.1-nano",
 "X-Route: CACHED\nX-Upstream: mock\nX-Served: gpt-4.1-nano"]
--- response_body_like eval
[qr/^\{"model":"gpt-4\.1-nano","max_tokens":32768,"messages":.*"prompt_cache_key":"pck_[0-9a-f]+"\}$/,
 qr/^\{"model":"gpt-4\.1-nano","max_tokens":32768,/]



=== TEST 2: an explicit large model goes to its upstream group
--- request
POST /v1/chat/completions
{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- response_headers
X-Route: SIDECAR
X-Upstream: mock_b
X-Served: gpt-4.1
--- response_body_like: ^\{"model":"gpt-4\.1","messages"



=== TEST 2a: the model kept: only the prompt_cache_key is added, right before the final '}' the inspection found (not a '}' in a string; Content-Length right)
--- request eval
"POST /v1/chat/completions
{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"}\"}] \n}"
--- error_code: 200
--- response_headers
X-Served: gpt-4.1
--- response_body_like: ^\{"model":"gpt-4\.1","messages":\[\{"role":"user","content":"\}"\}\] \n,"prompt_cache_key":"pck_[0-9a-f]{16}"\}$



=== TEST 2b: the client's own prompt_cache_key, even with an escaped key, is kept and not doubled
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4.1\",\"prompt_cache_key\":\"mine\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4.1\",\"prompt\\u005fcache_key\":\"mine\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"]
--- error_code eval
[200, 200]
--- response_body eval
["{\"model\":\"gpt-4.1\",\"prompt_cache_key\":\"mine\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"{\"model\":\"gpt-4.1\",\"prompt\\u005fcache_key\":\"mine\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"]



=== TEST 2c: the model kept, one of both max_tokens spellings over the cap: that one is lowered, the other kept
--- request
POST /v1/chat/completions
{"model":"gpt-4.1-nano","max_completion_tokens":10,"max_tokens":999999,"messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- response_headers
X-Served: gpt-4.1-nano
--- response_body_like: ^\{"model":"gpt-4\.1-nano","max_completion_tokens":10,"max_tokens":32768,"messages":\[\{"role":"user","content":"hi"\}\],"prompt_cache_key":"pck_[0-9a-f]{16}"\}$



=== TEST 3: a model the team may not use is denied with 403 in the OpenAI shape
--- more_headers
Content-Type: application/json
X-Team: interns
--- request
POST /v1/chat/completions
{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}
--- error_code: 403
--- response_body_like: "code":"model_not_allowed"



=== TEST 4: a model the team may not use is denied with 403 in the Anthropic shape
--- more_headers
Content-Type: application/json
X-Team: interns
--- request
POST /v1/messages
{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}
--- error_code: 403
--- response_body_like: "type":"error".*"type":"permission_error"



=== TEST 5: sidecar down: the static route (fail-open), logged once
--- init
Sidecar::stop();
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}"]
--- error_code eval
[200, 200]
--- response_headers eval
["X-Route: FAILOPEN\nX-Upstream: mock\nX-Served: gpt-4o-mini",
 "X-Route: FAILOPEN\nX-Upstream: mock"]
--- response_body_like eval
[qr/^\{"model":"gpt-4o-mini","messages"/, qr/"b"/]



=== TEST 6: sidecar down with fail=closed: 503 in the client's shape
--- http_config eval
"upstream mock { server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}; }
llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} fail=closed spool=s041b:1m decisions=d041b:1m;"
--- config
llm_gateway on;
location /v1/ {
    llm_route mock;
    proxy_pass http://$llm_upstream;
}
--- request
POST /v1/chat/completions
{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}]}
--- error_code: 503
--- response_body_like: "code":"routing_unavailable"
--- error_log
(fail=closed)



=== TEST 7: llm_route without llm_sidecar is rejected
--- http_config
--- config
location / { llm_route mock; }
--- must_die
--- error_log
llm_route needs "llm_sidecar"



=== TEST 8: a small team budget: routed normally, downgraded past the threshold, denied at 100 %
--- init
Sidecar::start() unless Sidecar::answers();
Sidecar::request("PUT", "/v1/budgets/team/t041-budget",
                 '{"limit_usd_micros":850,"window":"day"}', $Sidecar::token);
--- more_headers
Content-Type: application/json
X-Team: t041-budget
X-Mock-Tokens: 100
--- config
llm_gateway on;
llm_team $http_x_team;
location /v1/ {
    llm_route mock;
    add_header X-Served $llm_served_model always;
    proxy_set_header x-mock-tokens $http_x_mock_tokens;
    proxy_pass http://$llm_upstream;
}
location = /pause {
    echo_sleep 0.8;
    echo ok;
}
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4.1\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /pause",
"POST /v1/chat/completions
{\"model\":\"gpt-4.1\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"GET /pause",
"POST /v1/chat/completions
{\"model\":\"gpt-4.1\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"]
--- error_code eval
[200, 200, 200, 200, 429]
--- response_headers eval
["X-Served: gpt-4.1", "", "X-Served: gpt-4.1-nano", "",
 "Content-Type: application/json"]
--- response_body_like eval
[qr/"model":"gpt-4.1"/, qr/ok/, qr/"model":"gpt-4.1-nano"/, qr/ok/,
 qr/"type":"insufficient_quota".*"code":"budget_exceeded"/]
