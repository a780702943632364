# The link itself: route requests and usage batches reuse idle connections
# to the sidecar (keepalive, bounded per worker); a connection the sidecar
# dropped (SIGKILL, restart) is replaced without failing the request; the
# link's counters in llm_metrics (calls, errors, connections opened and
# reused, route decisions by source, llm_sidecar_up) move as they should and
# pass promtool check metrics.

use FindBin; use lib $FindBin::Bin; use LLM; use Sidecar;
use Test::Nginx::Socket 'no_plan';
use IO::Socket::UNIX;
use POSIX ();
use File::Temp ();

# a private directory for the fake sidecar's socket and promtool's input
# ($ENV{TMPDIR} may be unset: / is no place for them)
our $tmp = File::Temp::tempdir("t043-XXXXXX", TMPDIR => 1, CLEANUP => 1);

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
    llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} timeout=300ms keepalive=4
                spool=llm_spool_043:1m decisions=llm_dec_043:1m;
    llm_metrics_zone metrics_043:1m;
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
    llm_gateway on;
    llm_team \$http_x_team;

    location /v1/ {
        llm_route mock;
        add_header X-Route \$llm_route_status always;
        proxy_pass http://\$llm_upstream;
    }

    location = /metrics {
        llm_gateway off;
        llm_metrics;
    }

    location = /later {
        llm_gateway off;
        echo_sleep 0.4;
        echo_location /metrics;
    }
_EOC_
    }
});

# "--- between": what happens to the sidecar after request N of a block
# ("N kill" SIGKILL and start again, "N stop"); "--- promtool": every
# /metrics answer of the block passes promtool check metrics

add_response_body_check(sub {
    my ($block, $body, $req_idx) = @_;

    for (split /\n/, $block->between // '') {
        my ($i, $what) = split ' ';
        next unless $i == $req_idx;
        if ($what eq 'kill') {
            Sidecar::kill_hard();
            Sidecar::start();
        } elsif ($what eq 'stop') {
            Sidecar::stop();
        }
    }

    return unless defined $block->promtool && ($body // '') =~ /^# HELP/;

    my $file = "$main::tmp/043-metrics.$$.txt";
    open my $fh, '>', $file or die "$file: $!";
    print $fh $body;
    close $fh;
    my $out = `promtool check metrics < $file 2>&1`;
    my $rc = $?;
    unlink $file;
    Test::More::is($rc, 0, $block->name . " - promtool check metrics")
        or Test::More::diag($out);
});

# A sidecar that answers the first request of each connection only and
# closes at the second one without a word: the race of a reused idle
# connection the real sidecar closed (idle timeout, restart) made certain.
# Answers route calls with a decision that is not cached (ttl_ms 0).
our $fake_pid;

sub fake_sidecar {
    my ($path) = @_;
    unlink $path;
    my $l = IO::Socket::UNIX->new(Local => $path, Type => SOCK_STREAM,
                                  Listen => 16) or die "fake: $!";
    chmod 0666, $path;
    my $pid = fork() // die "fork: $!";
    if ($pid) {
        close $l;
        $fake_pid = $pid;
        return;
    }
    $SIG{CHLD} = 'IGNORE';
    while (my $c = $l->accept) {
        next if fork();
        my $buf = '';
        while ($buf !~ /\r\n\r\n/) {
            sysread($c, $buf, 4096, length $buf) or POSIX::_exit(0);
        }
        my ($len) = $buf =~ /content-length:\s*(\d+)/i;
        my ($head) = $buf =~ /^(.*?\r\n\r\n)/s;
        while (length($buf) < length($head) + ($len // 0)) {
            sysread($c, $buf, 4096, length $buf) or POSIX::_exit(0);
        }
        my $b = $buf =~ m{^POST /v1/route}
              ? '{"action":"allow","upstream":"mock","model":"gpt-4o-mini",'
                . '"ttl_ms":0}'
              : '{"accepted":1,"duplicates":0,"rejected":0}';
        print $c "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 . "Content-Length: " . length($b) . "\r\n\r\n$b";
        sysread($c, $buf, 4096);    # the next request: no answer
        POSIX::_exit(0);
    }
    POSIX::_exit(0);
}

add_cleanup_handler(sub { kill 'TERM', $fake_pid if $fake_pid });

run_tests();

__DATA__

=== TEST 1: ten route misses and their usage batches go over one connection, reused
--- request eval
[(map { "POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$_\"}]}" } 1 .. 10),
"GET /later"]
--- more_headers eval
[(map { "Content-Type: application/json\nX-Team: t043-ka-$_" } 1 .. 10), ""]
--- error_code eval
[(200) x 11]
--- response_headers eval
[("X-Route: SIDECAR") x 10, ""]
--- response_body_like eval
[(qr/chat\.completion/) x 10,
qr/llm_sidecar_up 1\n(?s:.*)llm_sidecar_calls_total\{call="route"\} 10\n(?s:.*)llm_sidecar_errors_total\{call="route"\} 0\n(?s:.*)llm_sidecar_connections_total\{kind="opened"\} [12]\nllm_sidecar_connections_total\{kind="reused"\} (?:[89]|[1-9][0-9])\n(?s:.*)llm_route_decisions_total\{source="sidecar"\} 10\nllm_route_decisions_total\{source="cache"\} 0\nllm_route_decisions_total\{source="fallback"\} 0\n/]
--- promtool
--- no_error_log
llm sidecar unix:



=== TEST 2: a sidecar killed (SIGKILL) and restarted between two requests: the dropped idle connection is replaced, the request is routed, not failed open
--- init
Sidecar::start() unless Sidecar::answers();
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
"GET /later",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}",
"GET /metrics"]
--- more_headers eval
["Content-Type: application/json\nX-Team: t043-kill-1", "",
 "Content-Type: application/json\nX-Team: t043-kill-2", ""]
--- between
1 kill
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["X-Route: SIDECAR", "", "X-Route: SIDECAR", ""]
--- response_body_like eval
[qr/chat\.completion/, qr/llm_sidecar_up 1/, qr/chat\.completion/,
qr/llm_sidecar_errors_total\{call="route"\} 0\n(?s:.*)llm_route_decisions_total\{source="sidecar"\} 2\n(?s:.*)llm_route_decisions_total\{source="fallback"\} 0\n/]
--- no_error_log
llm sidecar unix:



=== TEST 3: decisions by source: fresh, then cached, then the static route with the sidecar down (llm_sidecar_up 0, errors counted)
--- init
Sidecar::start() unless Sidecar::answers();
--- request eval
["POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
"GET /later",
"POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
"GET /metrics"]
--- more_headers eval
["Content-Type: application/json\nX-Team: t043-src",
 "Content-Type: application/json\nX-Team: t043-src", "",
 "Content-Type: application/json\nX-Team: t043-src-2", ""]
--- between
2 stop
--- error_code eval
[200, 200, 200, 200, 200]
--- response_headers eval
["X-Route: SIDECAR", "X-Route: CACHED", "", "X-Route: FAILOPEN", ""]
--- response_body_like eval
[qr/./, qr/./, qr/./, qr/./,
qr/llm_sidecar_up 0\n(?s:.*)llm_sidecar_calls_total\{call="route"\} 2\n(?s:.*)llm_sidecar_errors_total\{call="route"\} 1\n(?s:.*)llm_route_decisions_total\{source="sidecar"\} 1\nllm_route_decisions_total\{source="cache"\} 1\nllm_route_decisions_total\{source="fallback"\} 1\n/]
--- promtool



=== TEST 4: keepalive=0 opens a connection per call; keepalive out of range is rejected
--- init
Sidecar::start() unless Sidecar::answers();
--- http_config eval
"upstream mock { server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}; }
llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} keepalive=0 spool=s043b:1m decisions=d043b:1m;
llm_metrics_zone metrics_043b:1m;"
--- request eval
[(map { "POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$_\"}]}" } 1 .. 3),
"GET /later"]
--- more_headers eval
[(map { "Content-Type: application/json\nX-Team: t043-noka-$_" } 1 .. 3), ""]
--- error_code eval
[(200) x 4]
--- response_body_like eval
[(qr/./) x 3,
qr/llm_sidecar_calls_total\{call="route"\} 3\n(?s:.*)llm_sidecar_connections_total\{kind="opened"\} [4-9]\nllm_sidecar_connections_total\{kind="reused"\} 0\n/]



=== TEST 5: llm_sidecar keepalive=2000 is rejected
--- http_config
llm_sidecar unix:/tmp/x.sock keepalive=2000;
--- config
--- must_die
--- error_log
keepalive must be between 0 and 1024



=== TEST 6: a reused connection closed by the sidecar before it answers: the call is made again on a new connection, the request is routed
--- init
main::fake_sidecar("$main::tmp/h043-fake.sock");
--- http_config eval
"upstream mock { server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}; }
llm_sidecar unix:$main::tmp/h043-fake.sock spool=s043c:1m decisions=d043c:1m;
llm_metrics_zone metrics_043c:1m;"
--- request eval
[(map { "POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$_\"}]}" } 1 .. 4),
"GET /metrics"]
--- more_headers eval
[(map { "Content-Type: application/json\nX-Team: t043-race" } 1 .. 4), ""]
--- error_code eval
[(200) x 5]
--- response_headers eval
[("X-Route: SIDECAR") x 4, ""]
--- response_body_like eval
[(qr/chat\.completion/) x 4,
qr/llm_sidecar_errors_total\{call="route"\} 0\n(?s:.*)llm_sidecar_connections_total\{kind="reused"\} [1-9]\d*\n(?s:.*)llm_route_decisions_total\{source="sidecar"\} 4\n/]
--- no_error_log
llm sidecar unix:



=== TEST 7: a dead sidecar is tried once, then requests take the static route at once for a while (no connect per request)
--- init
Sidecar::stop();
--- request eval
[(map { "POST /v1/chat/completions
{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$_\"}]}" } 1 .. 3),
"GET /metrics"]
--- more_headers eval
[(map { "Content-Type: application/json\nX-Team: t043-dead-$_" } 1 .. 3), ""]
--- error_code eval
[(200) x 4]
--- response_headers eval
[("X-Route: FAILOPEN") x 3, ""]
--- response_body_like eval
[(qr/chat\.completion/) x 3,
qr/llm_sidecar_up 0\n(?s:.*)llm_sidecar_calls_total\{call="route"\} 1\n(?s:.*)llm_sidecar_errors_total\{call="route"\} 1\n(?s:.*)llm_route_decisions_total\{source="fallback"\} 3\n/]
