# Fault injection (issue 9): Redis stopped and started again under load.
# The limits keep working on the node's own state while Redis is away (no
# request fails or hangs for it), and the deltas counted during the outage
# reach Redis once it is back (resync). Redis: $TEST_NGINX_REDIS_PORT.

use FindBin; use lib $FindBin::Bin; use lib "$FindBin::Bin/fault";
use LLM; use Redis; use Fault;
use Test::More;
use Time::HiRes qw(sleep time);

my $redis = Redis::start();

Fault::start(http => <<"_EOC_", server => <<'_EOC_');
    llm_limit_zone lim095r:1m sync=redis://127.0.0.1:$redis
                   sync_interval=50ms;
_EOC_
        location /v1/ {
            llm_limit zone=lim095r key=$http_x_key rpm=60;
            proxy_pass http://mock;
        }
_EOC_

sub wave {
    my ($key, $n) = @_;
    return Fault::load($n, sub {
        Fault::request(path => '/v1/chat/completions', timeout => 5,
                       body => Fault::body(stream => 1),
                       headers => { 'X-Key' => $key });
    });
}

sub used {      # requests Redis counts in the RPM bucket (60000 per
                # request, full at rpm * 60000, refills rpm * 1000 per s)
    my ($key) = @_;
    my @keys = grep { /^llm:limit:lim095r:/ } split /\n/,
               Redis::cli('KEYS', 'llm:limit:lim095r:*');
    my $used = 0;
    for (@keys) {
        my $l = Redis::cli('HGET', $_, 'l');
        next unless $l =~ /^-?\d+$/;
        my $u = int((60 * 60000 - $l) / 60000 + 0.5);
        $used = $u if $u > $used;
    }
    return $used;
}

Fault::mark();

# 20 of rpm=60 admitted with Redis up, and synced there
my $t0 = time;
my @r = wave('r1', 20);
is(Fault::tally(@r), '200 complete: 20', 'Redis up: 20 of 60 admitted');
sleep 0.5;
cmp_ok(used(), '>=', 19, 'Redis up: the bucket is in Redis');

# outage: 60 more at once, streaming; the local limit admits about 40
Redis::stop();
my $t = time;
@r = wave('r1', 60);
my $ok = grep { $_->{status} == 200 && $_->{shape} eq 'complete' } @r;
my $limited = grep { $_->{status} == 429 && $_->{shape} eq 'error' } @r;
is($ok + $limited, 60, 'Redis down: each request answered or limited cleanly')
    or diag(Fault::tally(@r));
cmp_ok(abs($ok - 40), '<=', 3, "Redis down: the local limit holds ($ok admitted of 40 left)");
cmp_ok(time - $t, '<', 5, 'Redis down: no request waited for Redis');
@r = wave('r2', 10);
is(Fault::tally(@r), '200 complete: 10', 'Redis down: other keys unaffected');

# Redis back (empty): the buckets it lost start at the node's level, so
# the outage's deltas are not forgotten, and r1 gets no more than the
# bucket holds: 60 plus what refilled since the first request (1/s)

Redis::start();
my $u = 0;
for (1 .. 20) { $u = used(); last if $u >= 50; sleep 0.25 }
cmp_ok($u, '>=', 50, "Redis back: the outage's deltas resynced ($u used)");
@r = wave('r1', 30);
my $after = grep { $_->{status} == 200 } @r;
my $allowed = 60 + int(time - $t0) + 1;
cmp_ok(20 + $ok + $after, '<=', $allowed,
       "Redis back: r1 admitted 20 + $ok + $after <= $allowed in all");
is(scalar(@r) - $after, scalar(grep { $_->{status} == 429 } @r),
   'Redis back: the others were limited (429)');

like(substr(Fault::error_log(), $Fault::log_offset),
     qr/llm redis 127\.0\.0\.1:\d+ for llm_limit_zone "lim095r" is unreachable/,
     'the outage was logged');
Fault::log_clean('Redis outage');

done_testing();
