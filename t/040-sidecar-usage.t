# Module -> sidecar usage pipeline: every finished inspected request (JSON,
# stream, Anthropic, cache hit, upstream error, rate limit rejection) gives
# exactly one record in the sidecar's ledger; records wait in the shared
# memory spool while the sidecar is down and are delivered when it returns;
# a full spool drops (and counts, and logs) the newest records only; the
# directives nginx -t rejects.

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
        keepalive 8;
    }
    llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} timeout=300ms
                spool=llm_spool_040:1m;
    llm_cache_zone llm:1m;
    llm_limit_zone lim:1m;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
    llm_gateway on;
    llm_team \$http_x_team;

    location /v1/ {
        llm_cache llm;
        proxy_pass http://mock;
    }

    location /err/ {
        proxy_set_header x-mock-status 500;
        proxy_pass http://mock/;
    }

    location /lim/ {
        llm_limit zone=lim key=\$http_x_team rpm=1;
        proxy_pass http://mock/;
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
});

# the spool's drop report comes at a delivery tick, so it is looked for in
# the whole error log once the last request (which waits) has answered

add_response_body_check(sub {
    my ($block, $body, $req_idx) = @_;

    return unless defined $block->check_spool_log && $req_idx == 45;

    open my $fh, '<', $Test::Nginx::Util::ErrLogFile
        or die "$Test::Nginx::Util::ErrLogFile: $!";
    my $log = do { local $/; <$fh> };

    my @lines = $log =~ /(llm sidecar spool "tiny_040" full: \d+ usage records dropped since the last report \(\d+ in all\); increase the spool size or check the sidecar)/g;
    Test::More::is(scalar @lines, 1,
                   $block->name . " - one spool-full report");
});

run_tests();

__DATA__

=== TEST 1: N requests of every kind give exactly N records (a body that is not JSON gives none)
--- more_headers
Content-Type: application/json
X-Team: t040-kinds
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"json\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"sse\"}]}",
"POST /v1/messages
{\"model\":\"claude-haiku-4-5\",\"max_tokens\":20,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"cached\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"cached\"}]}",
"POST /err/v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"err\"}]}",
"POST /lim/v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}",
"POST /lim/v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"two\"}]}",
"POST /v1/chat/completions
{\"model\":",
"GET /spend?wait=0.5&team=t040-kinds"]
--- error_code eval
[200, 200, 200, 200, 200, 500, 200, 429, 400, 200]
--- response_body_like eval
[qr/chat.completion/, qr/DONE/, qr/"message"/, qr/./, qr/./, qr/error/,
 qr/./, qr/rate/, qr/invalid/,
 qr/"total":\{"requests":8,"errors":2,/]
--- no_error_log eval
[qr/llm sidecar unix:/, qr/llm sidecar spool/, qr/llm sidecar rejected/]



=== TEST 1b: a team with quotes and a backslash, longer than 16 bytes, reaches the ledger as it was sent (the record's JSON escaping)
--- more_headers
Content-Type: application/json
X-Team: t040 "quoted\team" and a long tail
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}",
"GET /spend?wait=0.5&team=t040%20%22quoted%5Cteam%22%20and%20a%20long%20tail"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/./, qr/./, qr/"t040 \\"quoted\\\\team\\" and a long tail".*"total":\{"requests":2,"errors":0,/]
--- no_error_log eval
[qr/llm sidecar rejected/, qr/llm sidecar rejected/, qr/llm sidecar rejected/]



=== TEST 2: records wait in the spool while the sidecar is down and are delivered when it is back
--- init
Sidecar::start_later(1.0);
--- more_headers
Content-Type: application/json
X-Team: t040-down
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}",
"POST /v1/messages
{\"model\":\"claude-haiku-4-5\",\"max_tokens\":20,\"messages\":[{\"role\":\"user\",\"content\":\"c\"}]}",
"GET /spend?wait=2.5&team=t040-down"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/./, qr/DONE/, qr/./, qr/"total":\{"requests":3,"errors":0,/]
--- timeout: 6



=== TEST 3: an unreachable sidecar is logged once per interval, not per attempt
--- init
Sidecar::stop();
--- more_headers
Content-Type: application/json
X-Team: t040-log
--- request
POST /v1/chat/completions
{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}]}
--- error_code: 200
--- wait: 1
--- grep_error_log eval
qr/llm sidecar \S+ usage delivery unreachable/
--- grep_error_log_out
llm sidecar unix:$TEST_NGINX_SIDECAR usage delivery unreachable



=== TEST 3b: llm_metrics shows the spool filling while the sidecar is down and empty again after delivery
--- init
Sidecar::start_later(1.5);
--- http_config eval
"upstream mock { server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}; }
llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} spool=spool_040m:64k;
llm_metrics_zone metrics_040:1m;"
--- config
llm_gateway on;
location /v1/ { proxy_pass http://mock; }
location = /metrics { llm_gateway off; llm_metrics; }
location = /later {
    llm_gateway off;
    echo_sleep 3;
    echo_location /metrics;
}
--- more_headers
Content-Type: application/json
X-Team: t040-metrics
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}",
"GET /metrics",
"GET /later"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/./, qr/./,
qr/llm_usage_spool_records\{zone="spool_040m"\} 2\n(?s:.*)llm_usage_spool_capacity_bytes\{zone="spool_040m"\} \d{5}\n(?s:.*)llm_usage_spool_dropped_total\{zone="spool_040m"\} 0\n(?s:.*)llm_usage_delivered_records_total\{zone="spool_040m"\} 0\n/,
qr/llm_usage_spool_records\{zone="spool_040m"\} 0\n(?s:.*)llm_usage_spool_bytes\{zone="spool_040m"\} 0\n(?s:.*)llm_usage_delivered_records_total\{zone="spool_040m"\} 2\n/]
--- timeout: 8



=== TEST 4: a full spool drops the newest records, counts and logs them; the others are delivered
--- init
Sidecar::start_later(4);
--- http_config eval
"upstream mock { server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}; }
llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} spool=tiny_040:32k;
llm_metrics_zone metrics_040:1m;"
--- config eval
"llm_gateway on;
llm_team \$http_x_team;
location /v1/ { proxy_pass http://mock; }
location = /metrics { llm_gateway off; llm_metrics; }
location = /spend {
    echo_sleep 6;
    echo_location /_spend \"group_by=team&team=t040-full" . ("x" x 400) . "\";
}
location = /_spend {
    llm_gateway off;
    proxy_pass http://unix:$ENV{TEST_NGINX_SIDECAR}:/v1/spend;
}"
--- more_headers eval
"Content-Type: application/json\nX-Team: t040-full" . ('x' x 400)
--- request eval
[(map { "POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$_\"}]}" } 1 .. 45),
"GET /spend", "GET /metrics"]
--- error_code eval
[(200) x 47]
--- response_body_like eval
[(qr/./) x 45, qr/"total":\{"requests":3[0-9],"errors":0,/,
qr/llm_usage_spool_records\{zone="tiny_040"\} 0\n(?s:.*)llm_usage_spool_dropped_total\{zone="tiny_040"\} (?:[1-9]|1[0-5])\n(?s:.*)llm_usage_delivered_records_total\{zone="tiny_040"\} 3\d\n/]
--- check_spool_log
--- timeout: 10



=== TEST 5: llm_sidecar rejects a remote address
--- http_config
llm_sidecar 10.1.2.3:80;
--- config
--- must_die
--- error_log
llm_sidecar "10.1.2.3:80" must be a unix socket



=== TEST 6: llm_sidecar rejects an unknown parameter and a tiny spool
--- http_config
llm_sidecar unix:/tmp/x.sock spool=s:4k;
--- config
--- must_die
--- error_log
spool size must be at least 32k



=== TEST 7: llm_sidecar rejects a bad timeout
--- http_config
llm_sidecar unix:/tmp/x.sock timeout=soon;
--- config
--- must_die
--- error_log
invalid llm_sidecar parameter "timeout=soon"



=== TEST 8: $llm_request_id is 32 hex digits, one value per request, and the worker's prefix followed by a counter
--- config
    location = /id {
        add_header X-Id $llm_request_id;
        echo "$llm_request_id $llm_request_id";
    }
--- request eval
["GET /id", "GET /id"]
--- response_body_like eval
[qr/^([0-9a-f]{16})([0-9a-f]{16}) \1\2$/, qr/^([0-9a-f]{32}) \1$/]
--- response_headers_like eval
["X-Id: [0-9a-f]{32}", "X-Id: [0-9a-f]{32}"]
