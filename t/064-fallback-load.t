# Fallback chain under concurrent load, with real processes (two workers):
# storms of upstream 503 and refused connections move every client request
# to the next group or to the template answer; each client gets a complete
# answer in its API's shape (an expired cache entry for a failing group
# with llm_fallback_stale), the access log tells the tier of each, the
# rate limit's stream slots are all free afterwards (a hop holds no second
# slot), and no worker crashes.

use FindBin; use lib $FindBin::Bin; use lib "$FindBin::Bin/fault";
use LLM; use Fault;
use Test::More;

my $streams = 40;
my $a = $ENV{TEST_NGINX_MOCK_A};

Fault::start(http => <<'_EOC_', server => <<"_EOC_");
    llm_limit_zone lim064:1m;
    llm_cache_zone cache064:1m;
    log_format tier064 'tier=$llm_tier served=$llm_served_model';
_EOC_
        access_log logs/tier.log tier064;
        llm_limit zone=lim064 key=\$http_x_key streams=$streams;
        llm_fallback_template "busy, try later";

        location /v1/ {
            llm_fallback \@fb model=m-fb;
            proxy_set_header x-mock-status \$http_x_fail;
            proxy_pass http://mock;
        }
        location \@fb {
            proxy_set_header x-mock-status "";
            proxy_set_header x-mock-fault "";
            proxy_pass http://127.0.0.1:$a;
        }
        location /c/ {
            llm_cache cache064;
            llm_cache_valid 1s;
            llm_cache_deterministic off;
            llm_fallback_stale on;
            rewrite ^/c(/.*)\$ \$1 break;
            proxy_set_header x-mock-status \$http_x_fail;
            proxy_pass http://mock;
        }
        location /dead/ {
            llm_fallback \@dead;
            rewrite ^/dead(/.*)\$ \$1 break;
            proxy_pass http://127.0.0.1:1;
        }
        location \@dead {
            proxy_set_header x-mock-status 529;
            proxy_pass http://mock;
        }
_EOC_

sub stream {
    my ($i, $path, %h) = @_;
    my $api = $i % 2 ? 'anthropic' : 'openai';
    my $p = $api eq 'anthropic' ? '/v1/messages' : '/v1/chat/completions';
    return Fault::request(path => "$path$p", timeout => 5,
                          body => Fault::body(api => $api, stream => 1),
                          headers => { 'X-Key' => 'k064', %h });
}

sub tiers {
    open my $f, '<', "$Fault::prefix/logs/tier.log" or return '';
    my %t;
    while (<$f>) { $t{"$1 $2"}++ if /tier=(\S+) served=(\S+)/ }
    close $f;
    truncate "$Fault::prefix/logs/tier.log", 0;
    return join ', ', map { "$_: $t{$_}" } sort keys %t;
}

sub scenario {
    my ($name, $n, $want, $tiers, $code) = @_;
    Fault::mark();
    tiers();
    my @r = Fault::load($n, $code);
    is(Fault::tally(@r), $want, "$name: every client got a clean answer");
    # the access log line follows the answer: wait for all of them (a
    # worker of a busy machine may write it a moment after the client got
    # its last byte)
    for (1 .. 50) {
        open my $f, '<', "$Fault::prefix/logs/tier.log" or last;
        my @l = <$f>;
        close $f;
        last if @l >= $n;
        select undef, undef, undef, 0.1;
    }
    is(tiers(), $tiers, "$name: the tier of every request");
    Fault::log_clean($name);
}

scenario('503 storm moves to the next group', $streams,
         "200 complete: $streams", "fallback m-fb: $streams", sub {
    stream($_[0], '', 'x-fail' => 503);
});

scenario('refused, then 529: template', 30, '200 complete: 30',
         "template gpt-4o-mini: 30", sub {
    stream($_[0], '/dead');
});

scenario('stream slots all free after the hops', $streams,
         "200 complete: $streams", "primary gpt-4o-mini: $streams", sub {
    stream($_[0], '');
});

# the stale tier: an expired entry answers every client of a failing group

{
    my $r = Fault::request(path => '/c/v1/chat/completions', timeout => 5,
                           body => Fault::body(content => 'stale me'),
                           headers => { 'X-Key' => 'k064' });
    is(Fault::shape($r), 'complete', 'stale: the entry is stored');
    sleep 1.2;
}

scenario('503 storm on an expired entry: stale', 10, '200 complete: 10',
         'stale gpt-4o-mini: 10', sub {
    Fault::request(path => '/c/v1/chat/completions', timeout => 5,
                   body => Fault::body(content => 'stale me'),
                   headers => { 'X-Key' => 'k064', 'x-fail' => 503 });
});

my $log = Fault::error_log();
my $hops = () = $log =~ /llm fallback: upstream group failed \(503\), trying \@fb \(hop 1\)/g;
is($hops, $streams, 'one hop line per 503 request');
my $tpl = () = $log =~ /llm fallback: serving template/g;
is($tpl, 30, 'one template line per request of the dead group');
my $stale = () = $log =~ /llm fallback: serving stale cache entry/g;
is($stale, 10, 'one stale line per request of the failing group');

done_testing();
