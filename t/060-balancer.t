# llm_balance in upstream{}: which peer served (the mock's x-mock-instance
# header), affinity, cool-down from Retry-After, no ejection on 400, server
# parameters, keepalive composition, two workers sharing the figures, and
# the configurations nginx -t rejects.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
master_on();
workers(2);
check_accum_error_log();

our $M = $ENV{TEST_NGINX_MOCK_PORT};
our $A = $ENV{TEST_NGINX_MOCK_A};
our $B = $ENV{TEST_NGINX_MOCK_B};
our $D = $ENV{TEST_NGINX_MOCK_D};

sub chat {
    my ($system, $user) = @_;
    my $sys = defined $system
        ? qq({"role":"system","content":"$system"},) : '';
    return "POST /v1/chat/completions\n"
        . qq({"model":"m","max_tokens":4,"messages":[$sys)
        . qq({"role":"user","content":"$user"}]});
}

# cold_burst(N): N sequential echo_location lines, /cold/1 .. /cold/N
sub cold_burst {
    my ($n) = @_;
    return join '', map { "        echo_location /cold/$_;\n" } 1 .. $n;
}

# /stats: the three instances' counters (its own connection counts as
# one in "connections"); /reset: zero them; /stats4, /reset4: the same
# with the fourth instance (d) too
our $tools = <<"_EOC_";
    location = /stats {
        echo_location /s/$M;
        echo_location /s/$A;
        echo_location /s/$B;
    }
    location = /stats4 {
        echo_location /s/$M;
        echo_location /s/$A;
        echo_location /s/$B;
        echo_location /s/$D;
    }
    location ~ ^/s/(\\d+)\$ {
        internal;
        proxy_pass http://127.0.0.1:\$1/stats;
    }
    location = /reset {
        echo_location /r/$M;
        echo_location /r/$A;
        echo_location /r/$B;
        echo ok;
    }
    location = /reset4 {
        echo_location /r/$M;
        echo_location /r/$A;
        echo_location /r/$B;
        echo_location /r/$D;
        echo ok;
    }
    location ~ ^/r/(\\d+)\$ {
        internal;
        proxy_method POST;
        proxy_pass http://127.0.0.1:\$1/mock/reset;
    }
    location = /sleep {
        echo_sleep 2.2;
        echo slept;
    }
    location = /sleep1 {
        echo_sleep 1.2;
        echo slept;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    if (defined $block->config && !defined $block->must_die) {
        $block->set_value("config", $block->config . $tools);
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers", "Content-Type: application/json\n");
    }
});

# promtool on every metrics answer
LLM::promtool_metrics();

# TEST 26: each burst's spill went to the server with the smaller
# footprint (history prefixes it served last), whatever the ring says;
# footprints from the cold pass's /stats, then each burst's own
my %foot;

add_response_body_check(sub {
    my ($block, $body, $idx, $rep, $dry_run) = @_;

    return if $dry_run || !defined $body || $block->name !~ /footprint/;

    %foot = () if $idx == 0;        # a repeat starts over

    return if $body !~ /"requests_total"/;

    my %n = $body =~ /"instance":"([^"]+)".*?"requests_total":(\d+)/g;

    if (!%foot) {
        %foot = %n;         # the cold pass: one prefix, one owner each
        Test::More::is(scalar(grep { $_ } values %n) >= 2, 1,
                       $block->name . " - cold prefixes on 2 servers or 3");
        return;
    }

    my ($o) = grep { $n{$_} == 2 } keys %n;
    my ($x) = grep { $n{$_} == 1 } keys %n;
    my ($z) = grep { $n{$_} == 0 } keys %n;

    Test::More::ok(defined $o && defined $x && defined $z,
                   $block->name . " - burst " . ($idx - 2) / 3 . ": owner 2, spill 1, other 0")
        or return;
    Test::More::cmp_ok($foot{$x}, '<=', $foot{$z},
                       $block->name . " - burst " . ($idx - 2) / 3 . ": the spill went to the"
                       . " smaller footprint ($x $foot{$x}, $z $foot{$z})");

    $foot{$o}++;            # the burst's prefix: last served by its owner
});

run_tests();

__DATA__

=== TEST 1: least_tokens: idle peers take turns, two workers share the figures
--- http_config
    upstream pool {
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
        add_header x-peer $llm_upstream_peer always;
    }
--- request eval
[map { main::chat(undef, "hi $_") } 1 .. 6]
--- response_headers eval
[ map { ("x-mock-instance: $_\nx-peer: 127.0.0.1:"
         . { mock => $::M, a => $::A, b => $::B }->{$_}) }
  qw(mock a b mock a b) ]
--- error_code eval
[200, 200, 200, 200, 200, 200]
--- no_error_log
[error]



=== TEST 2: weight: a peer of weight 2 takes two turns of four
--- http_config
    upstream pool {
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT weight=2;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
--- request eval
[map { main::chat(undef, "w $_") } 1 .. 8]
--- response_headers eval
[ map { "x-mock-instance: $_" } qw(mock a mock mock a mock mock a) ]



=== TEST 3: prefix: the same system prompt always goes to the same peer
--- http_config
    upstream pool {
        llm_balance prefix;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
--- request eval
["GET /reset", (map { main::chat("You are terse.", "q $_") } 1 .. 8),
 "GET /stats"]
--- response_body_like eval
["ok", (".*") x 8,
 qr/^(?=(?:.*"requests_total":0,){2})(?=.*"requests_total":8,)/s]



=== TEST 4: prefix: different prefixes spread over the peers
--- http_config
    upstream pool {
        llm_balance prefix epsilon=0.5;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
--- request eval
["GET /reset", (map { main::chat("Agent number $_.", "q") } 1 .. 24),
 "GET /stats"]
--- response_body_like eval
["ok", (".*") x 24,
 qr/^(?!.*"requests_total":(?:0|24),)(?=.*"requests_total":[1-9])/s]



=== TEST 5: a 429 with Retry-After: 2 cools the peer down 2 s, then it is back
--- http_config
    upstream pool {
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
    location /limited/ {
        llm_gateway on;
        proxy_set_header x-mock-status 429;
        proxy_set_header x-mock-retry-after 2;
        proxy_pass http://pool/v1/;
    }
--- request eval
[ "POST /limited/chat/completions\n"
  . '{"model":"m","messages":[{"role":"user","content":"x"}]}',
  (map { main::chat(undef, "c $_") } 1 .. 4),
  "GET /sleep",
  main::chat(undef, "back") ]
--- error_code eval
[429, 200, 200, 200, 200, 200, 200]
--- response_headers eval
[ "x-mock-instance: mock", "x-mock-instance: a", "x-mock-instance: b",
  "x-mock-instance: a", "x-mock-instance: b", "", "x-mock-instance: mock" ]
--- error_log eval
qr/llm balance: 127\.0\.0\.1:\d+ answered 429, cooling it down for 2000 ms/



=== TEST 6: a 429 without Retry-After cools down for cooldown= (default 1s)
--- http_config
    upstream pool {
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
    location /limited/ {
        llm_gateway on;
        proxy_set_header x-mock-status 429;
        proxy_pass http://pool/v1/;
    }
--- request eval
[ "POST /limited/chat/completions\n"
  . '{"model":"m","messages":[{"role":"user","content":"x"}]}',
  (map { main::chat(undef, "c $_") } 1 .. 2), "GET /sleep1",
  main::chat(undef, "back") ]
--- error_code eval
[429, 200, 200, 200, 200]
--- response_headers eval
[ "x-mock-instance: mock", "x-mock-instance: a", "x-mock-instance: a", "",
  "x-mock-instance: mock" ]
--- error_log eval
qr/answered 429, cooling it down for 1000 ms/



=== TEST 7: a 400 never ejects: max_fails=1 and the peer keeps its turn
--- http_config
    upstream pool {
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT max_fails=1 fail_timeout=30s;
        server 127.0.0.1:$TEST_NGINX_MOCK_A max_fails=1 fail_timeout=30s;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
    location /bad/ {
        llm_gateway on;
        proxy_set_header x-mock-status 400;
        proxy_pass http://pool/v1/;
    }
--- request eval
[ "POST /bad/chat/completions\n"
  . '{"model":"m","messages":[{"role":"user","content":"x"}]}',
  (map { main::chat(undef, "c $_") } 1 .. 3) ]
--- error_code eval
[400, 200, 200, 200]
--- response_headers eval
[ "x-mock-instance: mock", "x-mock-instance: a", "x-mock-instance: mock",
  "x-mock-instance: a" ]



=== TEST 8: a 500 counts for max_fails: the peer sits out fail_timeout
--- http_config
    upstream pool {
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT max_fails=1 fail_timeout=30s;
        server 127.0.0.1:$TEST_NGINX_MOCK_A max_fails=1 fail_timeout=30s;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
    location /broken/ {
        llm_gateway on;
        proxy_set_header x-mock-status 500;
        proxy_pass http://pool/v1/;
    }
--- request eval
[ "POST /broken/chat/completions\n"
  . '{"model":"m","messages":[{"role":"user","content":"x"}]}',
  (map { main::chat(undef, "c $_") } 1 .. 3) ]
--- error_code eval
[500, 200, 200, 200]
--- response_headers eval
[ "x-mock-instance: mock", "x-mock-instance: a", "x-mock-instance: a",
  "x-mock-instance: a" ]



=== TEST 9: down and backup: the backup serves when the primaries cannot
--- http_config
    upstream pool {
        llm_balance prefix;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT down;
        server 127.0.0.1:$TEST_NGINX_MOCK_B backup;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
--- request eval
[map { main::chat("s", "c $_") } 1 .. 2]
--- response_headers eval
["x-mock-instance: b", "x-mock-instance: b"]



=== TEST 10: keepalive after llm_balance: upstream connections are kept
--- http_config
    upstream pool {
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        keepalive 4;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://pool;
    }
--- request eval
[(map { main::chat(undef, "k $_") } 1 .. 4), "GET /stats"]
--- response_body_like eval
[(".*") x 4,
 qr/^(?=.*"instance":"mock"[^}]*"connections":[2-9])(?=.*"instance":"a"[^}]*"connections":[2-9])/s]
--- no_error_log
load balancing method redefined



=== TEST 11: keepalive before llm_balance is switched off, with a warning
--- http_config
    upstream pool {
        keepalive 4;
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://pool;
    }
--- request eval
[main::chat(undef, "k"), "GET /stats"]
--- response_body_like eval
[".*", qr/"instance":"b"[^}]*"connections":1,/s]
--- error_log
load balancing method redefined by "llm_balance": put "keepalive" after "llm_balance"



=== TEST 12: peak_ewma with a fixed seed serves from every peer
--- http_config
    upstream pool {
        llm_balance peak_ewma decay=5s seed=7;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
--- request eval
["GET /reset", (map { main::chat(undef, "e $_") } 1 .. 3), "GET /stats"]
--- response_body_like eval
["ok", (".*") x 3, qr/^(?!.*"requests_total":0,)/s]



=== TEST 13: llm_balance outside upstream{} is rejected
--- http_config
    llm_balance least_tokens;
--- config
--- must_die
--- error_log eval
qr/"llm_balance" directive is not allowed here in .*nginx\.conf:\d+/



=== TEST 14: a bad epsilon is rejected with file:line
--- http_config
    upstream pool {
        llm_balance prefix epsilon=0;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log eval
qr/invalid "epsilon=0" in "llm_balance": epsilon must be a number above 0 and at most 100, e\.g\. epsilon=0\.25 in .*nginx\.conf:\d+/



=== TEST 15: a parameter of another method is rejected
--- http_config
    upstream pool {
        llm_balance prefix decay=10s;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log eval
qr/"decay=10s" does not apply to "llm_balance prefix": decay= is for peak_ewma, epsilon=, slack=, tokens=, wait= and cold_wait= for prefix in .*nginx\.conf:\d+/



=== TEST 16: an unknown method is rejected
--- http_config
    upstream other {
        llm_balance fastest;
        server 127.0.0.1:1;
    }
--- config
--- must_die
--- error_log eval
qr/invalid method "fastest" in "llm_balance": use least_tokens, peak_ewma or prefix in .*nginx\.conf:\d+/



=== TEST 17: llm_metrics: picks, cool-downs and health per server, promtool clean
--- http_config
    upstream pool {
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
    }
    llm_metrics_zone metrics:1m;
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
    location /limited/ {
        llm_gateway on;
        proxy_set_header x-mock-status 429;
        proxy_set_header x-mock-retry-after 30;
        proxy_pass http://pool/v1/;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
[ "POST /limited/chat/completions\n"
  . '{"model":"m","messages":[{"role":"user","content":"x"}]}',
  (map { main::chat(undef, "c $_") } 1 .. 2), "GET /metrics" ]
--- error_code eval
[429, 200, 200, 200]
--- response_body_like eval
[ ".*", ".*", ".*",
  qr/llm_balancer_picks_total\{upstream="pool",peer="127.0.0.1:\d+"\}[ ]1\n
     llm_balancer_picks_total\{upstream="pool",peer="127.0.0.1:\d+"\}[ ]2\n
     .*llm_balancer_cooldowns_total\{upstream="pool",peer="127.0.0.1:\d+"\}[ ]1\n
     llm_balancer_cooldowns_total\{upstream="pool",peer="127.0.0.1:\d+"\}[ ]0\n
     .*llm_balancer_outstanding_tokens\{upstream="pool",peer="127.0.0.1:\d+"\}[ ]0\n
     llm_balancer_outstanding_tokens\{upstream="pool",peer="127.0.0.1:\d+"\}[ ]0\n
     .*llm_balancer_peer_up\{upstream="pool",peer="127.0.0.1:\d+"\}[ ]0\n
     llm_balancer_peer_up\{upstream="pool",peer="127.0.0.1:\d+"\}[ ]1\n/xs ]



=== TEST 18: prefix under concurrency: one hot prefix, the load bound holds
8 concurrent requests with the same system prompt on 3 peers: the bound
ceil(1.25 x 8 / 3) = 4 caps the home peer (4, 3, 1 by the ring walk);
without it all 8 would go to one peer.
--- http_config
    upstream pool {
        llm_balance prefix;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 400;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot;
        echo_location_async /hot;
        echo_location_async /hot;
        echo_location_async /hot;
        echo_location_async /hot;
        echo_location_async /hot;
        echo_location_async /hot;
        echo_location_async /hot;
    }
--- request eval
["GET /reset", "GET /burst", "GET /stats"]
--- response_body_like eval
["ok", ".*",
 qr/^(?!.*"requests_total":[5-9],)(?=.*"requests_total":4,)(?=.*"requests_total":3,)(?=.*"requests_total":1,)/s]



=== TEST 19: with the upstream zone: same turns, figures in both zones
--- http_config
    upstream pool {
        zone pool 64k;
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A max_fails=1;
        keepalive 2;
    }
    llm_metrics_zone metrics:1m;
--- config
    location /v1/ {
        llm_gateway on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://pool;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
[(map { main::chat(undef, "z $_") } 1 .. 4), "GET /metrics"]
--- response_headers eval
[(map { "x-mock-instance: $_" } qw(mock a mock a)), ""]
--- response_body_like eval
[(".*") x 4,
 qr/llm_balancer_picks_total\{upstream="pool",peer="127.0.0.1:\d+"\} 2\nllm_balancer_picks_total\{upstream="pool",peer="127.0.0.1:\d+"\} 2\n/]



=== TEST 20: a lone server is not left out by its cool-down (as nginx's max_fails)
--- http_config
    upstream pool {
        llm_balance least_tokens;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
    location /limited/ {
        llm_gateway on;
        proxy_set_header x-mock-status 429;
        proxy_set_header x-mock-retry-after 30;
        proxy_pass http://pool/v1/;
    }
--- request eval
[ "POST /limited/chat/completions\n"
  . '{"model":"m","messages":[{"role":"user","content":"x"}]}',
  main::chat(undef, "still") ]
--- error_code eval
[429, 200]
--- response_headers eval
["x-mock-instance: b", "x-mock-instance: b"]



=== TEST 21: prefix tokens=4: the first message joins the key, later turns keep it
Same system prompt everywhere. Conversations differ by their first user
message (16 bytes = 4 tokens, within tokens=4): they spread over the
peers; the turns of one conversation (same first message, other later
messages) stay on one peer.
--- http_config
    upstream pool {
        llm_balance prefix tokens=4;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
--- request eval
["GET /reset",
 (map { main::chat("Shared system prompt.", sprintf("conversation %03d", $_)) }
  1 .. 12),
 "GET /stats", "GET /reset",
 (map { "POST /v1/chat/completions\n"
        . '{"model":"m","max_tokens":4,"messages":[{"role":"system",'
        . '"content":"Shared system prompt."},{"role":"user","content":'
        . '"conversation 001"},{"role":"assistant","content":"answer"},'
        . qq({"role":"user","content":"turn $_"}]}) } 1 .. 6),
 "GET /stats"]
--- response_body_like eval
["ok", (".*") x 12,
 qr/^(?!.*"requests_total":(?:0|12),)/s,
 "ok", (".*") x 6,
 qr/^(?=(?:.*"requests_total":0,){2})(?=.*"requests_total":6,)/s]



=== TEST 22: prefix: over the bound, the server that served the prefix last takes the spill
The owner O and the ring's next server N of the hot prefix answer 429 and
cool down 2 s, so two requests of the prefix go to the third server T
(before: O 1, N 1, T 2). Then 3 concurrent requests: the first goes home
to O; the second finds O at its bound (ceil(1.25 x 2 / 3) = 1) and goes to
T, which served the prefix last (the ring alone would pick N); the third
fits O again (ceil(1.25 x 3 / 3) = 2). After: O 3, T 3, N 1 (the ring
alone: 3, 2, 2).
--- http_config
    upstream pool {
        llm_balance prefix;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
    location = /hot429 {
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-status 429;
        proxy_set_header x-mock-retry-after 2;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /hotq {
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 400;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot;
        echo_location_async /hot;
        echo_location_async /hot;
    }
--- request eval
["GET /reset", "GET /hot429", "GET /hot429", "GET /hotq", "GET /hotq",
 "GET /sleep", "GET /burst", "GET /stats"]
--- error_code eval
[200, 429, 429, 200, 200, 200, 200, 200]
--- response_body_like eval
["ok", (".*") x 6,
 qr/^(?!.*"requests_total":[02],)(?=(?:.*"requests_total":3,){2})(?=.*"requests_total":1,)/s]



=== TEST 23: prefix slack=1: one request above the bound stays home
3 concurrent requests of one prefix on 3 servers: the bounds
ceil(1.25 x n / 3) + 1 = 2, 2, 3 keep all three on the owner (without
slack: 2, 1, 0 as in TEST 18).
--- http_config
    upstream pool {
        llm_balance prefix slack=1;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 400;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot;
        echo_location_async /hot;
        echo_location_async /hot;
    }
--- request eval
["GET /reset", "GET /burst", "GET /stats"]
--- response_body_like eval
["ok", ".*",
 qr/^(?=(?:.*"requests_total":0,){2})(?=.*"requests_total":3,)/s]



=== TEST 24: a bad slack is rejected with file:line
--- http_config
    upstream pool {
        llm_balance prefix slack=1001;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/invalid "slack=1001" in "llm_balance": slack must be a number of requests from 0 to 1000, e\.g\. slack=1 in .*nginx\.conf:\d+/



=== TEST 25: slack= is for prefix only
--- http_config
    upstream pool {
        llm_balance least_tokens slack=1;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/"slack=1" does not apply to "llm_balance least_tokens": decay= is for peak_ewma, epsilon=, slack=, tokens=, wait= and cold_wait= for prefix in .*nginx\.conf:\d+/



=== TEST 26: prefix: with no holder in room, the spill goes to the smallest footprint
Ten cold prefixes one by one, each to its ring owner: the footprints
(history prefixes per server) are their counts in /stats. Then bursts of
3 concurrent requests of four fresh prefixes: the first goes home, the
second finds the owner at its bound (ceil(1.25 x 2 / 3) = 1) and no other
holder: it goes to the server of the two others with the smaller
footprint (checked in Perl above, whatever the ring's next server is),
the third fits the owner again. Its own upstream name: a zone of its own
even when nginx is reloaded between tests. (Which bursts tell the
footprint from the ring's order depends on the ports: with the default
ones the fourth burst fails without the footprint.)
--- http_config
    upstream pool26 {
        llm_balance prefix;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://pool26;
    }
    location = /c {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"cold $arg_i"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /cold {
        echo_location /c i=1;
        echo_location /c i=2;
        echo_location /c i=3;
        echo_location /c i=4;
        echo_location /c i=5;
        echo_location /c i=6;
        echo_location /c i=7;
        echo_location /c i=8;
        echo_location /c i=9;
        echo_location /c i=10;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 400;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"burst $arg_p"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot p=$arg_p;
        echo_location_async /hot p=$arg_p;
        echo_location_async /hot p=$arg_p;
    }
--- request eval
["GET /reset", "GET /cold", "GET /stats",
 map { ("GET /reset", "GET /burst?p=$_", "GET /stats") } 1 .. 4]
--- response_body_like eval
[("ok", ".*", ".*") x 5]



=== TEST 27: prefix wait=: held requests go home once a slot frees
3 requests of one prefix 100 ms apart on 4 servers, each 300 ms: the
first goes home; the others find the owner at its bound (ceil(1.25 x 2 /
4) = 1) and are held instead of spilled, then go home one by one as the
owner frees its slot: all three on the owner, two holds ending at home,
~200 and ~400 ms. (100 ms apart:
a check in one worker and the pick of a request arriving at the same
instant in the other are not one atomic step.)
--- http_config
    upstream pool27 {
        llm_balance prefix wait=5s;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
        server 127.0.0.1:$TEST_NGINX_MOCK_D;
    }
    log_format wait27 'w=$llm_balance_wait p=$llm_upstream_peer s=$status';
--- config
    location /v1/ {
        llm_gateway on;
        access_log logs/wait27.log wait27;
        proxy_pass http://pool27;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 300;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot;
        echo_sleep 0.1;
        echo_location_async /hot;
        echo_sleep 0.1;
        echo_location_async /hot;
    }
    location = /alog {
        default_type text/plain;
        alias $TEST_NGINX_SERVER_ROOT/logs/wait27.log;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
["GET /reset4", "GET /burst", "GET /stats4", "GET /alog", "GET /metrics"]
--- response_body_like eval
["ok", ".*",
 qr/^(?=(?:.*"requests_total":0,){2})(?=.*"requests_total":3,)/s,
 qr/\Aw=- p=(\S+) s=200\nw=(?:1[5-9]\d|[2-9]\d\d|1\d\d\d) p=\1 s=200\nw=(?:[3-9]\d\d|1\d\d\d) p=\1 s=200\n\z/,
 qr/llm_balancer_waits_total\{upstream="pool27",outcome="home"\} 2\nllm_balancer_waits_total\{upstream="pool27",outcome="spill"\} 0\n/]
--- no_error_log
[alert]
[emerg]



=== TEST 28: prefix wait=: the wait expires, the request spills as before
2 requests of one prefix 100 ms apart, each 800 ms, wait=100ms: the
second is held 100 ms, then spills to another server (the bound still
holds).
--- http_config
    upstream pool28 {
        llm_balance prefix wait=100ms;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
    log_format wait28 'w=$llm_balance_wait p=$llm_upstream_peer s=$status';
--- config
    location /v1/ {
        llm_gateway on;
        access_log logs/wait28.log wait28;
        proxy_pass http://pool28;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 800;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot;
        echo_sleep 0.1;
        echo_location_async /hot;
    }
    location = /alog {
        default_type text/plain;
        alias $TEST_NGINX_SERVER_ROOT/logs/wait28.log;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
["GET /reset", "GET /burst", "GET /stats", "GET /alog", "GET /metrics"]
--- response_body_like eval
["ok", ".*",
 qr/^(?=.*"requests_total":0,)(?=(?:.*"requests_total":1,){2})/s,
 qr/\Aw=- p=(\S+) s=200\nw=1\d\d p=(?!\1 )\S+ s=200\n\z/,
 qr/llm_balancer_waits_total\{upstream="pool28",outcome="home"\} 0\nllm_balancer_waits_total\{upstream="pool28",outcome="spill"\} 1\n/]
--- no_error_log
[alert]
[emerg]



=== TEST 29: prefix wait=: a client gone while held, nothing leaks
3 requests of one prefix 100 ms apart, each 1 s, wait=5s; the client
goes away after 0.4 s: the proxy connections close, the two held requests end
with 499 (their wait timers go with them), the one at home too; no hold
ends in a spill (both may end at home in the instant the home request
leaves, before their own close is seen), nothing is logged above info, and
the server answers after.
--- http_config
    upstream pool29 {
        llm_balance prefix wait=5s;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
        server 127.0.0.1:$TEST_NGINX_MOCK_D;
    }
    log_format wait29 'w=$llm_balance_wait s=$status';
--- config
    location /v1/ {
        llm_gateway on;
        access_log logs/wait29.log wait29;
        proxy_pass http://pool29;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 1000;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot;
        echo_sleep 0.1;
        echo_location_async /hot;
        echo_sleep 0.1;
        echo_location_async /hot;
    }
    location = /pause {
        echo_sleep 0.2;
        echo paused;
    }
    location = /alog {
        default_type text/plain;
        alias $TEST_NGINX_SERVER_ROOT/logs/wait29.log;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
["GET /burst", "GET /pause", "GET /alog", "GET /metrics"]
--- timeout: 0.4
--- abort
--- error_code eval
["", 200, 200, 200]
--- response_body_like eval
["", "paused",
 qr/\A(?=(?:.*w=[1-3]\d\d s=499\n){2})(?=.*w=- s=499\n)(?:[^\n]*\n){3}\z/s,
 qr/llm_balancer_waits_total\{upstream="pool29",outcome="home"\} [0-2]\nllm_balancer_waits_total\{upstream="pool29",outcome="spill"\} 0\n/]
--- no_error_log
[alert]
[emerg]
[crit]



=== TEST 30: prefix wait= through $llm_upstream (llm_route): held, then home
TEST 27 with the upstream named at run time (no sidecar listens: the
static route, fail-open).
--- http_config
    llm_sidecar unix:$TEST_NGINX_SERVER_ROOT/no-sidecar.sock timeout=50ms;
    upstream pool30 {
        llm_balance prefix wait=5s;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
        server 127.0.0.1:$TEST_NGINX_MOCK_D;
    }
--- config
    location /v1/ {
        llm_gateway on;
        llm_route pool30;
        proxy_pass http://$llm_upstream;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 300;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot;
        echo_sleep 0.1;
        echo_location_async /hot;
        echo_sleep 0.1;
        echo_location_async /hot;
    }
    location = /metrics {
        llm_metrics;
    }
--- request eval
["GET /reset4", "GET /burst", "GET /stats4", "GET /metrics"]
--- response_body_like eval
["ok", ".*",
 qr/^(?=(?:.*"requests_total":0,){2})(?=.*"requests_total":3,)/s,
 qr/llm_balancer_waits_total\{upstream="pool30",outcome="home"\} 2\n/]



=== TEST 31: wait= is for prefix only
--- http_config
    upstream pool {
        llm_balance peak_ewma wait=10ms;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/"wait=10ms" does not apply to "llm_balance peak_ewma": decay= is for peak_ewma, epsilon=, slack=, tokens=, wait= and cold_wait= for prefix in .*nginx\.conf:\d+/



=== TEST 32: a bad wait is rejected with file:line
--- http_config
    upstream pool {
        llm_balance prefix wait=20xs;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/invalid "wait=20xs" in "llm_balance": wait must be a time from 0 to 60s, e\.g\. wait=20ms in .*nginx\.conf:\d+/



=== TEST 33: a wait above 60s is rejected with file:line
--- http_config
    upstream pool {
        llm_balance prefix wait=61s;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/invalid "wait=61s" in "llm_balance": wait must be a time from 0 to 60s, e\.g\. wait=20ms in .*nginx\.conf:\d+/



=== TEST 34: prefix cold_wait=0: a prefix no server served is not held, a served one is
A request of one prefix takes 2 s at its home; twelve short requests of
twelve prefixes never seen follow one by one (about a third of them have
the same home, which is at its bound: without cold_wait they would wait
for it), then the first prefix again: only that one is held (until the
first request ends), the twelve spill at once.
--- http_config
    upstream pool34 {
        llm_balance prefix wait=3s cold_wait=0;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
    }
    log_format wait34 'k=$http_x_k w=$llm_balance_wait s=$status';
--- config eval
q|    location /v1/ {
        llm_gateway on;
        access_log logs/wait34.log wait34;
        proxy_pass http://pool34;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 2000;
        proxy_set_header x-k hot;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix 34"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location ~ ^/cold/(\d+)$ {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-k cold;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"cold prefix 34 number $1"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot;
        echo_sleep 0.1;
| . main::cold_burst(12) . q|        echo_location /hot;
    }
    location = /alog {
        default_type text/plain;
        alias $TEST_NGINX_SERVER_ROOT/logs/wait34.log;
    }
|
--- request eval
["GET /reset", "GET /burst", "GET /alog"]
--- response_body_like eval
["ok", ".*",
 qr/\A(?:k=cold w=- s=200\n){12}k=hot w=- s=200\nk=hot w=[1-9]\d\d+ s=200\n\z/]
--- timeout: 10
--- no_error_log
[alert]
[emerg]



=== TEST 35: cold_wait= longer than wait= is rejected with file:line
--- http_config
    upstream pool {
        llm_balance prefix wait=20ms cold_wait=30ms;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/"cold_wait=" of "llm_balance" must not be longer than "wait=" \(which is 20 ms\) in .*nginx\.conf:\d+/



=== TEST 36: a bad cold_wait is rejected with file:line
--- http_config
    upstream pool {
        llm_balance prefix wait=20ms cold_wait=5q;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/invalid "cold_wait=5q" in "llm_balance": cold_wait must be "auto" or a time from 0 to 60s, e\.g\. cold_wait=10ms in .*nginx\.conf:\d+/



=== TEST 37: cold_wait= is for prefix only
--- http_config
    upstream pool {
        llm_balance least_tokens cold_wait=5ms;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/"cold_wait=5ms" does not apply to "llm_balance least_tokens": decay= is for peak_ewma, epsilon=, slack=, tokens=, wait= and cold_wait= for prefix in .*nginx\.conf:\d+/



=== TEST 38: prefix cold_wait=auto (the default): cold prefixes held while prefixes recur, not once they stop
One request of a prefix takes 4 s at its home (of four servers: the bound
is ceil(1.25 x 2 / 4) = 1, that home is full); sixty short requests of sixty prefixes never seen
follow one by one. While the share of picks whose prefix was served lately
is a quarter or more (the first 43 picks after the hot one), a cold one
whose home is the full server waits 100 ms (about a quarter of the first
20);
after that none waits (45-60). The hot prefix again (quick this time) is
held (it recurs).
The reuse share reads under 0.2 in /metrics.
--- http_config
    upstream pool38 {
        llm_balance prefix wait=100ms;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
        server 127.0.0.1:$TEST_NGINX_MOCK_D;
    }
    log_format wait38 'k=$http_x_k w=$llm_balance_wait s=$status';
--- config eval
q|    location /v1/ {
        llm_gateway on;
        access_log logs/wait38.log wait38;
        proxy_pass http://pool38;
    }
    location = /metrics {
        llm_metrics;
    }
    location = /hot {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 4000;
        proxy_set_header x-k hot;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix 38"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /hot2 {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-k hot;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix 38"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location ~ ^/cold/(\d+)$ {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-k c$1;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"cold prefix 38 number $1"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot;
        echo_sleep 0.1;
| . main::cold_burst(60) . q|        echo_location /hot2;
    }
    location = /alog {
        default_type text/plain;
        alias $TEST_NGINX_SERVER_ROOT/logs/wait38.log;
    }
|
--- request eval
["GET /reset", "GET /burst", "GET /alog", "GET /metrics"]
--- response_body_like eval
["ok", ".*",
 qr/\A(?=[\s\S]*^k=c(?:[1-9]|1\d|20) w=1\d\d s=200\n)(?![\s\S]*^k=c(?:4[5-9]|5\d|60) w=\d)(?:k=c\d+ w=(?:-|1\d\d) s=200\n){60}(?=[\s\S]*^k=hot w=1\d\d s=200$)(?=[\s\S]*^k=hot w=- s=200$)(?:k=hot [^\n]*\n){2}\z/m,
 qr/^llm_balancer_prefix_reuse_ratio\{upstream="pool38"\} 0\.1\d{3}$/m]
--- timeout: 15
--- no_error_log
[alert]
[emerg]



=== TEST 39: cold_wait=auto without wait= is rejected with file:line
--- http_config
    upstream pool {
        llm_balance prefix cold_wait=auto;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- config
--- must_die
--- error_log eval
qr/"cold_wait=auto" of "llm_balance" needs "wait=" in .*nginx\.conf:\d+/



=== TEST 40: prefix wait=: no more held for a home than 4 per slot
Four servers, one request of a prefix takes 1.2 s at its home; four more,
100 ms apart, are held (bound ceil(1.25 x 2 / 4) = 1: up to 4 held for
it); the sixth finds the line full and spills at once, to another
server.
--- http_config
    upstream pool40 {
        llm_balance prefix wait=600ms;
        server 127.0.0.1:$TEST_NGINX_MOCK_PORT;
        server 127.0.0.1:$TEST_NGINX_MOCK_A;
        server 127.0.0.1:$TEST_NGINX_MOCK_B;
        server 127.0.0.1:$TEST_NGINX_MOCK_D;
    }
    log_format wait40 'k=$http_x_k w=$llm_balance_wait p=$llm_upstream_peer s=$status';
--- config
    location /v1/ {
        llm_gateway on;
        access_log logs/wait40.log wait40;
        proxy_pass http://pool40;
    }
    location ~ ^/hot/(\d+)$ {
        internal;
        proxy_method POST;
        proxy_set_header content-type application/json;
        proxy_set_header x-mock-ttft-ms 1200;
        proxy_set_header x-k h$1;
        proxy_set_body '{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"hot prefix 40"},{"role":"user","content":"q"}]}';
        proxy_pass http://127.0.0.1:$server_port/v1/chat/completions;
    }
    location = /burst {
        echo_location_async /hot/1;
        echo_sleep 0.1;
        echo_location_async /hot/2;
        echo_sleep 0.1;
        echo_location_async /hot/3;
        echo_sleep 0.1;
        echo_location_async /hot/4;
        echo_sleep 0.1;
        echo_location_async /hot/5;
        echo_sleep 0.1;
        echo_location_async /hot/6;
    }
    location = /alog {
        default_type text/plain;
        alias $TEST_NGINX_SERVER_ROOT/logs/wait40.log;
    }
--- request eval
["GET /reset", "GET /burst", "GET /alog"]
--- response_body_like eval
["ok", ".*",
 qr/\A(?=[\s\S]*^k=h1 w=- p=(\S+) s=200$)(?=[\s\S]*^k=h6 w=- p=(?!\1 )\S+ s=200$)(?=[\s\S]*^k=h2 w=\d+ )(?=[\s\S]*^k=h3 w=\d+ )(?=[\s\S]*^k=h4 w=\d+ )(?=[\s\S]*^k=h5 w=\d+ )(?:k=h\d [^\n]*\n){6}\z/m]
--- timeout: 10
--- no_error_log
[alert]
[emerg]
