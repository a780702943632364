# Fault injection, upstream side (issue 9), with real processes under
# concurrent load: the upstream resets or closes mid-stream, hangs before
# its headers and before the first token (proxy_read_timeout 1s), and
# answers storms of 429 and 5xx. Every client stream completes or ends in
# its API's error shape, no worker crashes, and afterwards the limit's
# stream slots are all free again and the cache holds no torn answer.

use FindBin; use lib $FindBin::Bin; use lib "$FindBin::Bin/fault";
use LLM; use Fault;
use Test::More;

my $streams = 40;

Fault::start(http => <<'_EOC_', server => <<'_EOC_');
    llm_limit_zone lim095:1m;
    llm_cache_zone cache095:1m;
_EOC_
        proxy_read_timeout 1s;
        location /v1/ {
            llm_limit zone=lim095 key=$http_x_key streams=40;
            proxy_pass http://mock;
        }
        location /c/ {
            llm_limit zone=lim095 key=$http_x_key streams=40;
            llm_cache cache095;
            llm_cache_deterministic off;
            add_header X-Cache-Status $llm_cache_status always;
            proxy_pass http://mock/;
        }
_EOC_

sub stream {
    my ($api, %h) = @_;
    my $path = $api eq 'anthropic' ? '/v1/messages' : '/v1/chat/completions';
    return Fault::request(path => $path, timeout => 5,
                          body => Fault::body(api => $api, stream => 1),
                          headers => { 'X-Key' => 'k095', %h });
}

sub scenario {
    my ($name, $n, $want, $code, $todo) = @_;
    Fault::mark();
    my @r = Fault::load($n, $code);
    my $got = Fault::tally(@r);
    if ($todo) {
        (my $status = $want) =~ s/ .*//;
        is(join(' ', map { $_->{status} } @r), join(' ', ($status) x $n),
           "$name: every client got $status");
    }
    TODO: {
        local $TODO = $todo;
        is($got, $want, "$name: every client got a clean answer")
            or diag($got);
    }
    Fault::log_clean($name);
}

# a stream cut by the upstream ends with the API's error event

for my $api (qw(openai anthropic)) {
    scenario("reset after 3 tokens ($api)", 20, '200 error: 20', sub {
        stream($api, 'x-mock-fault' => 'reset', 'x-mock-fault-after' => 3);
    });
    scenario("FIN after 2 tokens ($api)", 20, '200 error: 20', sub {
        stream($api, 'x-mock-fault' => 'close-mid-stream');
    });
    scenario("hang before the first token ($api)", 10, '200 error: 10', sub {
        stream($api, 'x-mock-fault' => 'hang-first-token');
    });
    scenario("upstream error event ($api)", 10, '200 error: 10', sub {
        stream($api, 'x-mock-fault' => 'sse-error',
               'x-mock-fault-after' => 2);
    });
}

# an upstream that never answers gets a 504, one that resets before its
# headers a 502, both in the client API's error shape (not nginx's page)

for my $api (qw(openai anthropic)) {
    scenario("hang before headers ($api)", 10, '504 error: 10', sub {
        stream($api, 'x-mock-fault' => 'hang-headers');
    });
}

scenario('reset before headers', 10, '502 error: 10', sub {
    stream('openai', 'x-mock-fault' => 'reset');
});

# storms: the upstream's own API-shaped errors pass through unchanged

for my $status (429, 500, 502, 503, 529) {
    scenario("$status storm", 30, "$status error: 30", sub {
        stream($_[0] % 2 ? 'anthropic' : 'openai',
               'x-mock-status' => $status, 'x-mock-retry-after' => 1);
    });
}

# every fault freed its stream slot: 40 (= streams) at once are admitted

scenario('stream slots all free after the faults', $streams,
         "200 complete: $streams", sub {
    stream($_[0] % 2 ? 'anthropic' : 'openai');
});

# a torn stream is never cached: after it, the same request is a MISS that
# completes, then a HIT

{
    my $body = Fault::body(stream => 1, content => 'cache me');
    my %h = ('X-Key' => 'k095c');
    my $torn = Fault::request(path => '/c/v1/chat/completions',
        body => $body, headers => { %h, 'x-mock-fault' => 'close-mid-stream' });
    is(Fault::shape($torn), 'error', 'cache: torn stream ends cleanly');
    my $miss = Fault::request(path => '/c/v1/chat/completions',
                              body => $body, headers => \%h);
    like($miss->{headers}, qr/^X-Cache-Status: MISS/mi,
         'cache: the torn answer was not stored');
    is(Fault::shape($miss), 'complete', 'cache: the MISS completes');
    my $hit = Fault::request(path => '/c/v1/chat/completions',
                             body => $body, headers => \%h);
    like($hit->{headers}, qr/^X-Cache-Status: HIT/mi, 'cache: then a HIT');
    is(Fault::shape($hit), 'complete', 'cache: the HIT completes');
    is(Fault::text($hit->{body}), Fault::text($miss->{body}),
       'cache: the HIT is the MISS answer');
}

done_testing();
