# Metrics: counters and histograms in shared memory served in the Prometheus
# text format by llm_metrics (every answer checked by `promtool check
# metrics`), label cardinality bounded by models= and upstreams=, upstream
# attempts by group across a fallback chain, the figures across a reload,
# the status page, the shipped alert rules (`promtool check rules`) and
# dashboard, and the configuration errors of llm_metrics_zone / llm_status.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempfile);
use JSON::PP;
use Time::HiRes ();

repeat_each(1);
no_shuffle();

my $repo = "$FindBin::Bin/..";
my $promtool = "promtool";

# promtool on every metrics answer
LLM::promtool_metrics();

# "--- hup_after: N": once the response to request N has been read, nginx
# reloads (such a block runs with a master process: HUP starts new
# workers, the old one closes its sockets); "--- hup_edit" (Perl code run
# on $_) may change nginx.conf first
add_response_body_check(sub {
    my ($block, $body, $idx, $rep, $dry_run) = @_;

    return if $dry_run || !defined $block->hup_after
              || $idx != $block->hup_after;

    my $conf = $Test::Nginx::Util::ConfFile;
    my $log = $Test::Nginx::Util::ErrLogFile;

    if (defined $block->hup_edit) {
        open my $in, '<', $conf or die "$conf: $!";
        local $_ = do { local $/; <$in> };
        close $in;
        eval $block->hup_edit;
        die $@ if $@;
        open my $out, '>', $conf or die "$conf: $!";
        print $out $_;
        close $out;
    }

    my $from = -s $log;
    open my $pf, '<', $Test::Nginx::Util::PidFile or die $!;
    my $pid = <$pf>;
    close $pf;
    chomp $pid;
    kill 'HUP', $pid or die "HUP $pid: $!";

    my $done = 0;
    for (1 .. 100) {
        open my $lf, '<', $log or die "$log: $!";
        seek $lf, $from, 0;
        my $new = do { local $/; <$lf> } // '';
        close $lf;
        $done = $new =~ /reconfiguring.*start worker process.*gracefully shutting down/s;
        last if $done;
        Time::HiRes::sleep(0.05);
    }

    Test::More::ok($done, $block->name . " - reloaded after request $idx");
});

# the shipped alert rules and dashboard, once per run of this file
{
    my $out = `$promtool check rules $repo/conf/prometheus/alerts.yml 2>&1`;
    Test::More::is($? >> 8, 0, "promtool check rules conf/prometheus/alerts.yml")
        or Test::More::diag($out);

    open my $fh, '<', "$repo/conf/grafana/ngx_llm.json" or die $!;
    my $dash = decode_json(do { local $/; <$fh> });
    my @exprs = map { $_->{expr} } map { @{ $_->{targets} || [] } }
                @{ $dash->{panels} };
    Test::More::ok(@exprs >= 8, "the dashboard has queries");

    # every metric a query or an alert names is a family the module or the
    # sidecar declares in its sources (renaming one breaks this test)
    my %known = (up => 1);
    for my $src (glob("$repo/ngx_llm_module/*.c"),
                 glob("$repo/sidecar/src/*.cpp"))
    {
        open my $sf, '<', $src or die "$src: $!";
        my $text = do { local $/; <$sf> };
        while ($text =~ /(?:\{\s*|family\()"(llm_[a-z_]+)",\s*"(counter|gauge|histogram)"/g) {
            $known{$1} = 1;
            if ($2 eq 'histogram') {
                $known{"$1_$_"} = 1 for qw(bucket sum count);
            }
        }
    }

    open my $rf, '<', "$repo/conf/prometheus/alerts.yml" or die $!;
    my $rules = do { local $/; <$rf> };
    my @rexprs = $rules =~ /^\s+expr:(.*?)^\s+(?:for|labels):/msg;
    Test::More::ok(@rexprs >= 13, "the alert rules have expressions");

    my @unknown = grep { !$known{$_} }
                  map { /\b((?:llm_|up\b)[a-z_]*)/g } @exprs, @rexprs;
    Test::More::is("@unknown", "", "the dashboard queries known metrics");
}

add_block_preprocessor(sub {
    my $block = shift;

    $Test::Nginx::Util::MasterProcessEnabled =
        defined $block->hup_after ? 'on' : 'off';

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    upstream mock {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
    }
    llm_metrics_zone metrics:1m models=3;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
    location /v1/ {
        llm_gateway on;
        proxy_pass http://mock;
    }
    location = /metrics {
        llm_metrics;
    }
_EOC_
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers",
                          "Content-Type: application/json\n"
                          . "Authorization: Bearer sk-secret-one\n");
    }

    if (!defined $block->no_error_log && !defined $block->must_die) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n[emerg]\n");
    }
});

sub body {
    my ($model) = @_;
    return "{\"model\":\"$model\",\"max_tokens\":12,"
           . '"messages":[{"role":"user","content":"hi"}]}';
}

sub chat {
    my ($model, $extra) = @_;
    $extra //= '';
    return "POST /v1/chat/completions\n{\"model\":\"$model\","
           . "\"max_tokens\":12$extra,"
           . '"messages":[{"role":"user","content":"hi"}]}';
}

our @two = (chat("gpt-a"), chat("gpt-a", ',"stream":true'));

run_tests();

__DATA__

=== TEST 1: requests, outcomes, tokens and both histograms move (TTFT: streams)
--- request eval
[@::two, "GET /metrics"]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["", "", "Content-Type: text/plain; version=0.0.4; charset=utf-8"]
--- response_body_like eval
[qr/chat\.completion/, qr/\[DONE\]/,
 qr/^# HELP llm_requests_total .*
llm_requests_total\{model="gpt-a",api="chat",status="2xx"\} 2
(?:.*\n)?llm_request_outcomes_total\{model="gpt-a",outcome="complete"\} 2
(?:.*\n)?llm_tokens_total\{model="gpt-a",direction="prompt"\} [1-9]\d*
(?:.*\n)?llm_tokens_total\{model="gpt-a",direction="completion"\} 24
(?:.*\n)?llm_upstream_responses_total\{model="gpt-a",status="2xx"\} 2
(?:.*\n)?# TYPE llm_ttft_seconds histogram
(?:.*\n)?llm_ttft_seconds_bucket\{model="gpt-a",le="\+Inf"\} 1
llm_ttft_seconds_sum\{model="gpt-a"\} \d+\.\d{3}
llm_ttft_seconds_count\{model="gpt-a"\} 1
(?:.*\n)?llm_request_duration_seconds_count\{model="gpt-a"\} 2
(?:.*\n)?# TYPE llm_metrics_models gauge
llm_metrics_models 1\n.*llm_metrics_models_limit 3\n# HELP llm_fallback_total .*\nllm_fallback_total\{tier="fallback"\} 0\n.*llm_fallback_hops_total 0\n$/s]
--- response_body_unlike eval
[qr/^$/, qr/^$/, qr/sk-secret/]
--- no_error_log
[error]



=== TEST 2: the histograms put a slow first token in the right bucket
--- request eval
[::chat("slow", ',"stream":true'), "GET /metrics"]
--- more_headers eval
["Content-Type: application/json\nx-mock-ttft-ms: 300", ""]
--- response_body_like eval
[qr/\[DONE\]/,
 qr/llm_ttft_seconds_bucket\{model="slow",le="0\.25"\} 0\nllm_ttft_seconds_bucket\{model="slow",le="0\.5"\} 1\n.*llm_request_duration_seconds_bucket\{model="slow",le="0\.25"\} 0\n/s]



=== TEST 3: models beyond models= fold into "other"; odd names too
--- request eval
[::chat("m1"), ::chat("m2"), ::chat("m3"), ::chat("m4"), ::chat("m5"),
 ::chat("evil model"), ::chat("none"), "GET /metrics"]
--- response_body_like eval
[qr/./, qr/./, qr/./, qr/./, qr/./, qr/./, qr/./,
 qr/llm_requests_total\{model="m1",api="chat",status="2xx"\} 1
llm_requests_total\{model="m2",api="chat",status="2xx"\} 1
llm_requests_total\{model="m3",api="chat",status="2xx"\} 1
llm_requests_total\{model="other",api="chat",status="2xx"\} 4
(?:.*\n)?llm_metrics_models 3\n/s]



=== TEST 4: requests without a model count as "none", errors by class
--- request eval
["POST /v1/chat/completions\n{not json", ::chat("gone"), "GET /metrics"]
--- more_headers eval
["Content-Type: application/json", "Content-Type: application/json\nx-mock-status: 503", ""]
--- error_code eval
[400, 503, 200]
--- response_body_like eval
[qr/error/, qr/error/,
 qr/llm_requests_total\{model="none",api="chat",status="4xx"\} 1
llm_requests_total\{model="gone",api="chat",status="5xx"\} 1
(?:.*\n)?llm_request_outcomes_total\{model="none",outcome="rejected"\} 1
llm_request_outcomes_total\{model="gone",outcome="error"\} 1
(?:.*\n)?llm_upstream_responses_total\{model="gone",status="5xx"\} 1\n/s]



=== TEST 5: rate limit decisions
--- http_config
    upstream mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    llm_metrics_zone metrics:1m;
    llm_limit_zone lim:1m;
--- config
    location /v1/ {
        llm_gateway on;
        llm_limit zone=lim key=$http_authorization rpm=1;
        proxy_pass http://mock;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
[::chat("lm"), ::chat("lm"), ::chat("lm"), "GET /metrics"]
--- error_code eval
[200, 429, 429, 200]
--- response_body_like eval
[qr/./, qr/./, qr/./,
 qr/llm_rate_limit_decisions_total\{model="lm",result="passed"\} 1
llm_rate_limit_decisions_total\{model="lm",result="rejected"\} 2\n.*llm_metrics_models_limit 20\n/s]



=== TEST 6: cache hits and misses
--- http_config
    upstream mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    llm_cache_zone answers:1m;
--- config
    location /v1/ {
        llm_gateway on;
        llm_cache answers;
        proxy_pass http://mock;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
[::chat("c", ',"temperature":0'), ::chat("c", ',"temperature":0'),
 ::chat("c", ',"temperature":0'), ::chat("d"), "GET /metrics"]
--- response_headers eval
["X-Cache-Status: MISS", "X-Cache-Status: HIT", "X-Cache-Status: HIT", "", ""]
--- response_body_like eval
[qr/./, qr/./, qr/./, qr/./,
 qr/llm_cache_requests_total\{model="c",status="miss"\} 1
llm_cache_requests_total\{model="c",status="hit"\} 2\n.*llm_cache_requests_total\{model="d",status="bypass"\} 1\n/s]



=== TEST 7: the status page: self-contained, pointed at the metrics
--- config
    location = /status {
        llm_status metrics=/metrics sidecar=/sidecar/metrics;
    }
    location = /metrics {
        llm_metrics;
    }
--- request
GET /status
--- response_headers
Content-Type: text/html; charset=utf-8
--- response_body_like eval
qr/^<!DOCTYPE html>.*id="req-rate".*<script>var LLM_METRICS="\/metrics",LLM_SIDECAR="\/sidecar\/metrics";<\/script>\n$/s
--- response_body_unlike eval
qr/(?:src|href)="?(?:https?:)?\/\//



=== TEST 8: metrics and status answer GET and HEAD only
--- request eval
["POST /metrics\nx", "HEAD /metrics"]
--- error_code eval
[405, 200]



=== TEST 9: llm_metrics without a zone uses the default one
--- http_config
    upstream mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
[::chat("z"), "GET /metrics"]
--- response_body_like eval
[qr/./, qr/llm_requests_total\{model="z",api="chat",status="2xx"\} 1\n.*llm_metrics_models_limit 20\n/s]



=== TEST 10: llm_metrics_zone rejects a bad size
--- http_config
    llm_metrics_zone metrics:1k;
--- config
--- must_die
--- error_log
invalid zone size "metrics:1k" in "llm_metrics_zone", it must be at least



=== TEST 11: llm_metrics_zone rejects a bad models=
--- http_config
    llm_metrics_zone metrics:1m models=lots;
--- config
--- must_die
--- error_log
invalid "models=lots" in "llm_metrics_zone", it must be a number from 0 to 1000



=== TEST 12: a zone too small for models=
--- http_config
    llm_metrics_zone metrics:64k models=1000;
--- config
--- must_die
--- error_log
llm_metrics_zone "metrics" is too small for models=1000 upstreams=32, it needs at least



=== TEST 13: one zone only
--- http_config
    llm_metrics_zone a:1m;
    llm_metrics_zone b:1m;
--- config
--- must_die
--- error_log
"llm_metrics_zone" is duplicate, one zone holds the metrics of every location



=== TEST 14: llm_status rejects a URI that would break out of the script
--- http_config
--- config
    location = /status {
        llm_status 'metrics=/m"+alert(1)+"';
    }
--- must_die
--- error_log
invalid URI in "metrics=/m"+alert(1)+"" of "llm_status"



=== TEST 15: upstream attempts by group and status class; an address that names no group counts as "other"
--- http_config
    upstream alpha {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    upstream beta {
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
    }
    map $http_x_group $llm_group {
        default     alpha;
        beta        beta;
        addr        127.0.0.1:$TEST_NGINX_MOCK_B;
    }
    llm_metrics_zone metrics:1m;
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://$llm_group;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
[::chat("g"), ::chat("g"), ::chat("g"), ::chat("g"), ::chat("g"),
 "GET /metrics"]
--- more_headers eval
["Content-Type: application/json",
 "Content-Type: application/json\nx-mock-status: 503",
 "Content-Type: application/json\nx-group: beta",
 "Content-Type: application/json",
 "Content-Type: application/json\nx-group: addr",
 ""]
--- error_code eval
[200, 503, 200, 200, 200, 200]
--- response_headers eval
["x-mock-instance: mock", "", "x-mock-instance: a", "", "x-mock-instance: b", ""]
--- response_body_like eval
[qr/./, qr/./, qr/./, qr/./, qr/./,
 qr/\n# TYPE llm_upstream_requests_total counter
llm_upstream_requests_total\{upstream="alpha",status="2xx"\} 2
llm_upstream_requests_total\{upstream="alpha",status="5xx"\} 1
llm_upstream_requests_total\{upstream="beta",status="2xx"\} 1
llm_upstream_requests_total\{upstream="other",status="2xx"\} 1
# HELP llm_metrics_models /s]



=== TEST 16: a fallback chain: each group counts its own attempts, retries included
--- http_config
    upstream alpha {
        server 127.0.0.1:1;
        server 127.0.0.1:1;
    }
    upstream beta {
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
    }
    llm_metrics_zone metrics:1m;
--- config
    location /v1/ {
        llm_gateway on;
        llm_fallback @fb;
        proxy_pass http://alpha;
    }
    location @fb {
        llm_gateway on;
        proxy_pass http://beta;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
[::chat("f"), "GET /metrics"]
--- error_code eval
[200, 200]
--- response_body_like eval
[qr/chat\.completion/,
 qr/llm_upstream_responses_total\{model="f",status="2xx"\} 1
llm_upstream_responses_total\{model="f",status="5xx"\} 2
(?:.*\n)?# TYPE llm_upstream_requests_total counter
llm_upstream_requests_total\{upstream="alpha",status="5xx"\} 2
llm_upstream_requests_total\{upstream="beta",status="2xx"\} 1
# HELP llm_metrics_models (?:.*\n)?llm_fallback_hops_total 1\n$/s]



=== TEST 17: groups beyond upstreams= fold into "other"; an implicit group is host:port
--- http_config
    upstream alpha {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    upstream beta {
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
    }
    llm_metrics_zone metrics:1m upstreams=2;
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://alpha;
    }
    location /b/ {
        llm_gateway on;
        llm_api chat;
        proxy_pass http://beta/v1/;
    }
    location /c/ {
        llm_gateway on;
        llm_api chat;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_B/v1/;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
[::chat("u"), "POST /c/chat/completions\n" . ::body("u"),
 "POST /b/chat/completions\n" . ::body("u"),
 "POST /b/chat/completions\n" . ::body("u"),
 "GET /metrics"]
--- error_code eval
[200, 200, 200, 200, 200]
--- response_body_like eval
[qr/./, qr/./, qr/./, qr/./,
 qr/\n# TYPE llm_upstream_requests_total counter
llm_upstream_requests_total\{upstream="alpha",status="2xx"\} 1
llm_upstream_requests_total\{upstream="127\.0\.0\.1:$ENV{TEST_NGINX_MOCK_B}",status="2xx"\} 1
llm_upstream_requests_total\{upstream="other",status="2xx"\} 2
# HELP llm_metrics_models /s]



=== TEST 18: upstreams=0: every group is "other"
--- http_config
    upstream mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    llm_metrics_zone metrics:1m upstreams=0;
--- request eval
[::chat("z"), "GET /metrics"]
--- response_body_like eval
[qr/./, qr/\n# TYPE llm_upstream_requests_total counter
llm_upstream_requests_total\{upstream="other",status="2xx"\} 1
# HELP llm_metrics_models /s]



=== TEST 19: a group name of 64 bytes or more counts as "other", one of 63 does not
--- http_config
    upstream gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg-long-name {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    upstream hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh {
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
    }
    llm_metrics_zone metrics:1m;
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg-long-name;
    }
    location /b/ {
        llm_gateway on;
        llm_api chat;
        proxy_pass http://hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh/v1/;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
[::chat("n"), "POST /b/chat/completions\n" . ::body("n"), "GET /metrics"]
--- response_body_like eval
[qr/./, qr/./, qr/\n# TYPE llm_upstream_requests_total counter
llm_upstream_requests_total\{upstream="hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh",status="2xx"\} 1
llm_upstream_requests_total\{upstream="other",status="2xx"\} 1
# HELP llm_metrics_models /s]



=== TEST 20: a reload keeps the figures of an unchanged zone
--- http_config
    upstream mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    upstream beta {
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
    }
    llm_metrics_zone metrics:1m models=3 upstreams=4;
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://mock;
    }
    location /b/ {
        llm_gateway on;
        llm_api chat;
        proxy_pass http://beta/v1/;
    }
    location = /metrics {
        llm_metrics;
    }
--- hup_after: 1
--- request eval
[::chat("r"), ::chat("r"), ::chat("r"),
 "POST /b/chat/completions\n" . ::body("r"),
 "GET /metrics"]
--- response_body_like eval
[qr/./, qr/./, qr/./, qr/./,
 qr/llm_requests_total\{model="r",api="chat",status="2xx"\} 4
(?:.*\n)?# TYPE llm_upstream_requests_total counter
llm_upstream_requests_total\{upstream="mock",status="2xx"\} 3
llm_upstream_requests_total\{upstream="beta",status="2xx"\} 1
# HELP llm_metrics_models /s]



=== TEST 21: a reload with another upstreams= starts the figures anew
--- http_config
    upstream mock {
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
    llm_metrics_zone metrics:1m upstreams=4;
--- hup_after: 1
--- hup_edit
s/upstreams=4/upstreams=5/ or die "no upstreams=4 in nginx.conf";
--- request eval
[::chat("s"), ::chat("s"), ::chat("s"), "GET /metrics"]
--- response_body_like eval
[qr/./, qr/./, qr/./,
 qr/llm_requests_total\{model="s",api="chat",status="2xx"\} 1
(?:.*\n)?# TYPE llm_upstream_requests_total counter
llm_upstream_requests_total\{upstream="mock",status="2xx"\} 1
# HELP llm_metrics_models /s]



=== TEST 22: llm_metrics_zone rejects a bad upstreams=, with file:line
--- http_config
    llm_metrics_zone metrics:1m upstreams=1001;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid "upstreams=1001" in "llm_metrics_zone", it must be a number from 0 to 1000 in \S+nginx\.conf:\d+/



=== TEST 23: a zone too small for upstreams=
--- http_config
    llm_metrics_zone metrics:64k models=0 upstreams=1000;
--- config
--- must_die
--- error_log
llm_metrics_zone "metrics" is too small for models=0 upstreams=1000, it needs at least
