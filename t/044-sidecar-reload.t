# The end-to-end invariant of the usage pipeline across the events of a
# running gateway: N routed requests, then an event, then N more, and the
# sidecar's ledger holds exactly 2N records whose spend equals the sum the
# price table gives for the usage the clients saw (conf/prices.json, per
# record rounded half up, as the sidecar's README says). Events:
#
#   - nginx -s reload (HUP to the master);
#   - the sidecar SIGKILLed, requests while it is down (static route,
#     records spooled), a reload while it is down (the spool survives it),
#     then the sidecar back;
#   - the sidecar SIGKILLed and restarted at once (the link's idle
#     connections die with it: nothing may be lost).
#
# A Perl driver (t/fault/Fault.pm runs nginx), not Test::Nginx blocks:
# reloads happen between requests of one nginx.

use FindBin; use lib $FindBin::Bin; use lib "$FindBin::Bin/fault";
use LLM; use Sidecar; use Fault;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);

my $N = 12;

my %conf = (http => <<"_EOC_", server => <<'_EOC_');
    llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} timeout=300ms
                spool=spool044:1m decisions=dec044:1m;
_EOC_
        llm_team $http_x_team;
        location /v1/ {
            llm_route mock;
            add_header X-Route $llm_route_status always;
            proxy_pass http://$llm_upstream;
        }
_EOC_

my %price;
{
    open my $f, '<', "$FindBin::Bin/../conf/prices.json" or die $!;
    local $/;
    my $t = decode_json(<$f>);
    $price{$_->{name}} = $_ for @{ $t->{models} };
}

# cost in micro-USD of one record, from the usage the client saw
sub cost {
    my ($model, $prompt, $cached, $written, $completion) = @_;
    my $p = $price{$model} or die "no price for $model";
    my $num = ($prompt - $cached - $written) * $p->{input_per_mtok}
              + $cached * $p->{cache_read_per_mtok}
              + $written * $p->{cache_write_per_mtok}
              + $completion * $p->{output_per_mtok};
    return int(($num + 500_000) / 1_000_000);
}

my $seq = 0;

# $n requests of team $team, OpenAI and Anthropic in turn; returns the
# expected spend and the number that failed
sub send_requests {
    my ($team, $n, $route) = @_;
    my ($spend, $bad) = (0, 0);
    for my $i (1 .. $n) {
        $seq++;
        my $api = $i % 2 ? 'openai' : 'anthropic';
        my $model = $api eq 'openai' ? 'gpt-4o-mini' : 'claude-haiku-4-5';
        my $r = Fault::request(
            path => $api eq 'openai' ? '/v1/chat/completions'
                                     : '/v1/messages',
            body => Fault::body(api => $api, model => $model,
                                content => "request $seq of $team"),
            headers => { 'X-Team' => $team });
        my $u = eval { decode_json($r->{body})->{usage} };
        if ($r->{status} != 200 || !$u
            || ($route && $r->{headers} !~ /^X-Route: (?:$route)\r?$/mi))
        {
            $bad++;
            diag("$team: $r->{status} $r->{headers}") if $bad < 3;
            next;
        }
        $spend += $api eq 'openai'
            ? cost($model, $u->{prompt_tokens},
                   $u->{prompt_tokens_details}{cached_tokens} // 0, 0,
                   $u->{completion_tokens})
            : cost($model,
                   $u->{input_tokens} + ($u->{cache_read_input_tokens} // 0)
                   + ($u->{cache_creation_input_tokens} // 0),
                   $u->{cache_read_input_tokens} // 0,
                   $u->{cache_creation_input_tokens} // 0,
                   $u->{output_tokens});
    }
    return ($spend, $bad);
}

# the ledger's (requests, cost) for a team, once it holds $want records
# (then a little longer, so that a record too many would show)
sub ledger {
    my ($team, $want) = @_;
    my ($n, $cost) = (-1, -1);
    for my $try (1 .. 60) {
        my ($st, $b) = Sidecar::request('GET',
                           "/v1/spend?group_by=team&team=$team");
        ($n, $cost) = $b =~ /"total":\{"requests":(\d+).*?"cost_usd_micros":(\d+)/s
                      ? ($1, $2) : (-1, -1);
        last if $n >= $want;
        sleep 0.1;
    }
    sleep 0.5;
    my ($st, $b) = Sidecar::request('GET', "/v1/spend?group_by=team&team=$team");
    ($n, $cost) = ($1, $2)
        if $b =~ /"total":\{"requests":(\d+).*?"cost_usd_micros":(\d+)/s;
    return ($n, $cost);
}

sub check {
    my ($name, $team, $spend, $bad) = @_;
    is($bad, 0, "$name: all 2N requests answered 200 with usage");
    my ($n, $cost) = ledger($team, 2 * $N);
    is($n, 2 * $N, "$name: the ledger holds exactly 2N = " . 2 * $N
                   . " records");
    is($cost, $spend, "$name: spend = the price table's sum ($spend uUSD)");
    ok($spend > 0, "$name: a spend to compare");
}

Fault::start(%conf, workers => 2);
Fault::mark();

# 1. a reload in the middle

my ($s1, $b1) = send_requests('t044-reload', $N, 'SIDECAR|CACHED');
Fault::reload(%conf, workers => 2);
my ($s2, $b2) = send_requests('t044-reload', $N, 'SIDECAR|CACHED');
check('reload', 't044-reload', $s1 + $s2, $b1 + $b2);

# 2. the sidecar killed; requests while it is down; a reload meanwhile

($s1, $b1) = send_requests('t044-down', $N, 'SIDECAR|CACHED');
Sidecar::kill_hard();
($s2, $b2) = send_requests('t044-down', $N / 2, 'FAILOPEN|CACHED');
Fault::reload(%conf, workers => 2);
sleep 0.5;
my ($s3, $b3) = send_requests('t044-down', $N / 2, 'FAILOPEN|CACHED');
Sidecar::start();
check('sidecar down, reload', 't044-down', $s1 + $s2 + $s3, $b1 + $b2 + $b3);

# 3. the sidecar killed and back at once: the link's idle connections die

($s1, $b1) = send_requests('t044-kill', $N, 'SIDECAR|CACHED');
Sidecar::kill_hard();
Sidecar::start();
# a delivery tick that met the dead sidecar makes the next requests of that
# worker take the static route until a tick succeeds (100 ms at most)
($s2, $b2) = send_requests('t044-kill', $N, 'SIDECAR|CACHED|FAILOPEN');
check('sidecar SIGKILL', 't044-kill', $s1 + $s2, $b1 + $b2);

Fault::log_clean('all');

done_testing();
