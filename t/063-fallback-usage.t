# Fallback chain and the usage ledger: a client request that went down the
# chain (a hop with model=, a streamed hop, the template tier) gives exactly
# one record in the sidecar's ledger, billed to the model that served it;
# the record's extra "tier" field is accepted by the sidecar.

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
    upstream mock_a {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_A};
    }
    llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} timeout=300ms
                spool=llm_spool_063:1m;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
    llm_gateway on;
    llm_team \$http_x_team;
    add_header x-tier \$llm_tier always;

    location /v1/ {
        llm_fallback \@fb model=gpt-4.1;
        proxy_set_header x-mock-status \$http_x_fail;
        proxy_pass http://mock;
    }

    location \@fb {
        proxy_set_header x-mock-status "";
        proxy_pass http://mock_a;
    }

    location /t/ {
        llm_fallback_template "busy, try later";
        proxy_pass http://127.0.0.1:1/;
    }

    location = /spend {
        echo_sleep \$arg_wait;
        echo_location /_spend "group_by=model&team=\$arg_team";
    }

    location = /_spend {
        llm_gateway off;
        proxy_pass http://unix:$ENV{TEST_NGINX_SIDECAR}:/v1/spend;
    }
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: one record per client request, billed to the served model
--- more_headers eval
["Content-Type: application/json\nX-Team: t063\nx-fail: 503",
 "Content-Type: application/json\nX-Team: t063\nx-fail: 429",
 "Content-Type: application/json\nX-Team: t063",
 "Content-Type: application/json\nX-Team: t063",
 "X-Team: t063"]
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"three\"}]}",
"POST /t/v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"four\"}]}",
"GET /spend?wait=0.8&team=t063"]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers eval
["x-tier: fallback\nx-mock-instance: a", "x-tier: fallback\nx-mock-instance: a",
 "x-tier: primary\nx-mock-instance: mock", "x-tier: template", ""]
--- response_body_like eval
[qr/"model":"gpt-4\.1"/, qr/"model":"gpt-4\.1".*\[DONE\]/s, qr/"model":"gpt-4o-mini"/,
 qr/"content":"busy, try later"/,
 qr/^\{"group_by":"model","rows":\[\{"model":"gpt-4\.1","requests":2,"errors":0,"prompt_tokens":[1-9]\d*,.*\},\{"model":"gpt-4o-mini","requests":2,"errors":0,.*"total":\{"requests":4,"errors":0,/]
--- no_error_log eval
[qr/llm sidecar rejected/, qr/llm sidecar unix:/, qr/\[alert\]|\[crit\]/]
