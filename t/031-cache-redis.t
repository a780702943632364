# Response cache L2 in Redis, and L1 across a reload, with a real
# redis-server and two nginx nodes (two masters, two L1 zones in two
# shared memory segments) sharing it: an entry stored by node A is a hit
# on node B and is promoted to B's L1; callers stay apart in L2; a hung
# Redis bounds the wait; a stopped Redis degrades to L1 without errors
# to clients and is logged once; an L1 entry survives `nginx -s reload`.
#
# This file drives nginx itself (Test::More + HTTP::Tiny) because it
# needs two servers and a HUP between requests: it runs unchanged under
# the project's runner and upstream Test::Nginx (it uses neither).
#
# Ports: node A $TEST_NGINX_PORT (1984), node B $TEST_NGINX_PORT2
# (A + 1), redis $TEST_NGINX_REDIS_PORT (mock base + 9); the mock comes
# from t/LLM.pm. Only the processes started here are stopped.

use strict;
use warnings;
use FindBin; use lib $FindBin::Bin; use LLM;
use Test::More;
use HTTP::Tiny;
use File::Path qw(make_path remove_tree);
use POSIX ();
use Time::HiRes qw(sleep time);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $servroot = $ENV{TEST_NGINX_SERVROOT} || "$FindBin::Bin/servroot";
my $base = "${servroot}_031";     # the runners own $servroot itself
my $port_a = $ENV{TEST_NGINX_PORT} || 1984;
my $port_b = $ENV{TEST_NGINX_PORT2} || $port_a + 1;
my $rport = $ENV{TEST_NGINX_REDIS_PORT} || ($ENV{LLM_MOCK_BASE} || 18080) + 9;
my $mock = $ENV{TEST_NGINX_MOCK_PORT};
my %pid;

plan skip_all => 'redis-server is not installed'
    unless -x '/usr/bin/redis-server' && -x '/usr/bin/redis-cli';

for my $p ($port_a, $port_b, $rport) {
    BAIL_OUT("127.0.0.1:$p is busy") if LLM::listening($p);
}

remove_tree($base);

sub spawn {
    my ($name, @cmd) = @_;

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        POSIX::setsid();
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$base/$name.out";
        open STDERR, '>&', \*STDOUT;
        exec @cmd or POSIX::_exit(127);
    }

    $pid{$name} = $pid;
}

sub wait_port {
    my ($port, $up) = @_;

    for (1 .. 100) {
        return 1 if LLM::listening($port) == $up;
        sleep 0.05;
    }

    return 0;
}

sub stop {
    my ($name) = @_;
    my $pid = delete $pid{$name} or return;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

END {
    local $?;       # keep the exit status of the test file

    stop($_) for keys %pid;
}

sub redis {
    my $out = `redis-cli -h 127.0.0.1 -p $rport @_ 2>&1`;
    chomp $out;
    return $out;
}

sub start_redis {
    make_path("$base/redis");
    spawn('redis', '/usr/bin/redis-server', '--bind', '127.0.0.1',
          '--port', $rport, '--save', '', '--appendonly', 'no',
          '--dir', "$base/redis");
    wait_port($rport, 1) or BAIL_OUT("redis-server did not listen on $rport");
}

sub conf {
    my ($node, $port, $extra) = @_;

    my $modules = join '',
        map { "load_module $_;\n" } split ' ', $ENV{TEST_NGINX_LOAD_MODULES};

    return <<"_EOC_";
${modules}daemon off;
master_process on;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log info;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $base/$node/tmp;
    proxy_temp_path $base/$node/tmp;
    upstream mock { server 127.0.0.1:$mock; }
    $extra
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            llm_gateway on;
            llm_cache llm;
            proxy_pass http://mock;
        }
        location = /stats { proxy_pass http://mock/stats; }
        location = /reset { proxy_method POST; proxy_pass http://mock/mock/reset; }
    }
}
_EOC_
}

sub write_conf {
    my ($node, $port, $extra) = @_;

    make_path("$base/$node/conf", "$base/$node/logs", "$base/$node/tmp");
    open my $fh, '>', "$base/$node/conf/nginx.conf" or die $!;
    print $fh conf($node, $port, $extra);
    close $fh;
}

sub nginx_t {
    my ($node) = @_;
    return scalar `$nginx -p $base/$node/ -c conf/nginx.conf -t 2>&1`;
}

sub start_node {
    my ($node, $port) = @_;

    spawn($node, $nginx, '-p', "$base/$node/", '-c', 'conf/nginx.conf');
    wait_port($port, 1) or BAIL_OUT("nginx $node did not start: "
                                    . `cat $base/$node.out`);
}

sub error_log {
    my ($node) = @_;
    open my $fh, '<', "$base/$node/logs/error.log" or return '';
    local $/;
    return <$fh>;
}

my $http = HTTP::Tiny->new(timeout => 10);

sub chat {
    my ($port, $prompt, %opt) = @_;

    my $body = '{"model":"r","temperature":0,'
               . ($opt{stream} ? '"stream":true,' : '')
               . '"messages":[{"role":"user","content":"' . $prompt . '"}]}';

    my %h = ('Content-Type' => 'application/json');
    $h{'x-api-key'} = $opt{key} if $opt{key};

    my $t = time;
    my $res = $http->post("http://127.0.0.1:$port/v1/chat/completions",
                          { headers => \%h, content => $body });
    $res->{elapsed} = time - $t;
    $res->{cache} = $res->{headers}{'x-cache-status'} // '';

    return $res;
}

sub upstream_calls {
    my $res = $http->get("http://127.0.0.1:$port_a/stats");
    return $res->{content} =~ /"requests_total":(\d+)/ ? $1 : -1;
}

sub content_of {
    my ($res) = @_;
    return $res->{content} =~ /"content":"([^"]*)"/ ? $1 : undef;
}


# configurations nginx -t rejects

my $zone = "llm_cache_zone llm:1m redis=redis://127.0.0.1:$rport "
           . "redis_timeout=200ms";

write_conf('bad', $port_a, 'llm_cache_zone llm:1m redis_ttl=1h;');
like(nginx_t('bad'), qr/"redis_ttl" and "redis_timeout" need "redis=" in "llm_cache_zone" in .*nginx\.conf:\d+/,
     'redis_ttl without redis= is rejected');

write_conf('bad', $port_a, "llm_cache_zone llm:1m redis=redis://127.0.0.1:$rport redis_timeout=2m;");
like(nginx_t('bad'), qr/invalid redis_timeout "redis_timeout=2m", it must be a time from 1ms to 60s/,
     'a redis_timeout over 60s is rejected');

write_conf('bad', $port_a, 'llm_cache_zone llm:1m redis=redis://localhost.invalid:x;');
like(nginx_t('bad'), qr/invalid redis address "redis:\/\/localhost\.invalid:x": invalid port in .*nginx\.conf:\d+/,
     'a bad redis address is rejected');

write_conf('a', $port_a, "$zone;");
write_conf('b', $port_b, "$zone redis_ttl=1h;");
like(nginx_t('a'), qr/test is successful/, 'node A configuration is valid');


# the shared L2

start_redis();
start_node('a', $port_a);
start_node('b', $port_b);
$http->post("http://127.0.0.1:$port_a/reset");

my $res = chat($port_a, 'one');
is($res->{status}, 200, 'A: 200');
is($res->{cache}, 'MISS', 'A: MISS, answered by the upstream');
my $content = content_of($res);
ok($content, 'A: the answer has content');

my @keys;
for (1 .. 50) {
    @keys = grep { /^llm:cache:v1:[0-9a-f]{32}$/ } split /\n/, redis('KEYS', "'llm:cache:*'");
    last if @keys;
    sleep 0.05;
}
is(scalar @keys, 1, 'A stored one entry in Redis under the prefix');
my $ttl = redis('TTL', $keys[0]);
ok($ttl > 590 && $ttl <= 600, "its TTL is llm_cache_valid (600 s): $ttl");

$res = chat($port_b, 'one');
is($res->{status}, 200, 'B: 200');
is($res->{cache}, 'HIT', 'B: HIT from the entry A stored');
is(content_of($res), $content, 'B: the same answer');
ok(defined $res->{headers}{age}, 'B: Age header');
is(upstream_calls(), 1, 'one upstream call for both nodes');

$res = chat($port_b, 'one', stream => 1);
is($res->{cache}, 'HIT', 'B: a stream of the same request hits');
like($res->{content}, qr/^data: .*data: \[DONE\]\n\n$/s, 'B: served as SSE');

$res = chat($port_b, 'one', key => 'sk-other');
is($res->{cache}, 'MISS', 'another caller does not hit the entry in L2');
is(upstream_calls(), 2, 'so it went upstream');

# promotion: with Redis emptied, B still has the entry in its L1

is(redis('FLUSHALL'), 'OK', 'Redis flushed');
$res = chat($port_b, 'one');
is($res->{cache}, 'HIT', 'B: HIT from L1 after the promotion');
is(upstream_calls(), 2, 'no upstream call');

$res = chat($port_a, 'one');
is($res->{cache}, 'HIT', 'A: HIT from its own L1');


# reload: L1 survives a HUP with the zone unchanged (Redis is empty)

my $workers = () = error_log('a') =~ /start worker process/g;
kill 'HUP', $pid{a};
for (1 .. 100) {
    my $n = () = error_log('a') =~ /start worker process/g;
    last if $n > $workers && error_log('a') =~ /exited with code 0/;
    sleep 0.05;
}
like(error_log('a'), qr/reconfiguring/, 'A reloaded');
$res = chat($port_a, 'one');
is($res->{status}, 200, 'A after the reload: 200');
is($res->{cache}, 'HIT', 'A after the reload: HIT, the L1 entry survived');
is(upstream_calls(), 2, 'no upstream call');


# a hung Redis: the GET waits redis_timeout (200 ms), then upstream

kill 'STOP', $pid{redis};
$res = chat($port_a, 'two');
is($res->{status}, 200, 'Redis hung: 200');
is($res->{cache}, 'MISS', 'Redis hung: MISS, answered by the upstream');
ok($res->{elapsed} < 1.5, "Redis hung: the wait is bounded ($res->{elapsed} s)");
kill 'CONT', $pid{redis};
like(error_log('a'), qr/llm cache redis 127\.0\.0\.1:$rport of zone "llm" unavailable \(timed out/,
     'the timeout is logged');


# outage: Redis stopped, both nodes answer from upstream and L1

stop('redis');
wait_port($rport, 0);
sleep 0.2;

my $before = () = error_log('b') =~ /llm cache redis .* unavailable/g;
my @status;
for my $p ('three', 'three', 'four', 'four', 'three') {
    $res = chat($port_b, $p);
    push @status, "$res->{status} $res->{cache}";
}
is_deeply(\@status, ['200 MISS', '200 HIT', '200 MISS', '200 HIT', '200 HIT'],
          'Redis down: every answer 200, misses stored and hit in L1');
my $after = () = error_log('b') =~ /llm cache redis .* unavailable/g;
is($after - $before, 1, 'Redis down: logged once for the interval');
unlike(error_log('a') . error_log('b'), qr/\[(?:alert|crit|emerg)\]/,
       'no alert on either node (no socket left open by the reload)');

$res = chat($port_b, 'five', stream => 1);
is($res->{status}, 200, 'Redis down: a stream 200');
like($res->{content}, qr/data: \[DONE\]\n\n$/, 'Redis down: the stream completes');

stop('a');
stop('b');

done_testing();
