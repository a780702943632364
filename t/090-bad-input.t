# The bad-input corpus (t/corpus/bad-requests.txt, written by
# t/corpus/gen.pl) through one nginx: every hostile request gets a clean
# 4xx in its API's exact error shape (the body is parsed as JSON), or, when
# it is valid enough to forward, reaches the mock and comes back 200; no
# worker crashes, and the gateway still serves good requests afterwards.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';
use JSON::PP ();

repeat_each(1);
no_shuffle();
no_long_string();
log_level('info');      # the debug log of 450 requests costs a minute

our %Case;


# the corpus escapes: \\ \t \n \r \xHH \R{N:text}

sub unescape {
    my ($s) = @_;
    my $out = '';

    while ($s =~ /\G(?:([^\\]+)|\\(?:([\\tnr])|x([0-9A-Fa-f]{2})
                     |R\{(\d+):((?:[^\\}]|\\.)*)\}))/gcx)
    {
        if (defined $1) {
            $out .= $1;
        } elsif (defined $2) {
            $out .= {'\\' => '\\', t => "\t", n => "\n", r => "\r"}->{$2};
        } elsif (defined $3) {
            $out .= chr hex $3;
        } else {
            my ($n, $text) = ($4, $5);
            $text =~ s/\\x7[dD]/}/g;
            $out .= unescape($text) x $n;
        }
    }

    die "corpus: bad escape at " . (pos($s) // 0) . "\n"
        if (pos($s) // 0) != length $s;

    return $out;
}

sub load_corpus {
    my $file = "$FindBin::Bin/corpus/bad-requests.txt";
    my @cases;

    open my $in, '<:raw', $file or die "$file: $!\n";

    while (my $line = <$in>) {
        chomp $line;
        next if $line =~ /^#/ || $line eq '';

        my ($id, $path, $expect, $headers, $body) = split /\t/, $line, -1;
        die "$file:$.: 5 fields expected\n" unless defined $body;

        my %c = (id => $id, path => $path, body => unescape($body));

        ($c{status}, my @opts) = split / /, $expect;
        for (@opts) {
            my ($k, $v) = split /=/, $_, 2;
            $c{$k} = $v;
        }

        $c{headers} = $headers eq '-'
                      ? ['Content-Type: application/json']
                      : [grep { length } split /\n/, unescape($headers)];
        $c{anthropic} = $path =~ m{/messages$} ? 1 : 0;

        push @cases, \%c;
    }

    return @cases;
}

sub raw_request {
    my ($id) = @_;
    my $c = $Case{$id};
    my $chunked = grep { /^Transfer-Encoding:\s*chunked$/i } @{ $c->{headers} };
    my $req = "POST $c->{path} HTTP/1.1\r\nHost: localhost\r\n"
              . "Connection: close\r\n";

    $req .= "$_\r\n" for @{ $c->{headers} };
    $req .= "x-mock-echo: 1\r\n" if $c->{status} eq 'fwd';

    my $body = $c->{body};

    if ($chunked) {
        my $out = '';
        for (my $i = 0; $i < length $body; $i += 8000) {
            my $part = substr $body, $i, 8000;
            $out .= sprintf("%x\r\n", length $part) . "$part\r\n";
        }
        return $req . "\r\n" . $out . "0\r\n\r\n";
    }

    return $req . "Content-Length: " . length($body) . "\r\n\r\n" . $body;
}

# "ok\n", or what is wrong with the response body

sub verdict_for {
    my ($id) = @_;
    my $c = $Case{$id};

    return [sub { my $why = verdict($c, shift); $why // "ok\n" }];
}

sub keys_are {
    my ($h, @want) = @_;
    return 0 unless ref $h eq 'HASH';
    return join(',', sort keys %$h) eq join(',', sort @want);
}

sub verdict {
    my ($c, $body) = @_;

    if ($c->{status} eq 'stream') {
        return $c->{anthropic}
               ? ($body =~ /event: message_stop\ndata: [^\n]*\n\n\z/
                  ? undef : "no message_stop at the end: $body")
               : ($body =~ /data: \[DONE\]\n\n\z/
                  ? undef : "no [DONE] at the end: $body");
    }

    if ($c->{status} eq 'fwd') {
        # the mock echoes what it received; only the gateway's own
        # stream_options addition may differ
        (my $got = $body) =~ s/,"stream_options":\{"include_usage":true\}//;
        return $got eq $c->{body} ? undef
               : "the mock did not receive the body as sent";
    }

    my $j = eval { JSON::PP->new->decode($body) };
    return "not JSON ($@): $body" unless ref $j eq 'HASH';

    if ($c->{anthropic}) {
        return "not the Anthropic error shape: $body"
            unless keys_are($j, qw(type error)) && $j->{type} eq 'error'
                   && keys_are($j->{error}, qw(type message));

        my $type = $c->{status} == 413 ? 'request_too_large'
                                       : 'invalid_request_error';
        return "error.type is not $type: $body"
            unless $j->{error}{type} eq $type;
        return "empty message: $body"
            unless !ref $j->{error}{message} && length $j->{error}{message};
        return undef;
    }

    my $e = $j->{error};

    return "not the OpenAI error shape: $body"
        unless keys_are($j, 'error')
               && keys_are($e, qw(message type param code));
    return "type is not invalid_request_error: $body"
        unless $e->{type} eq 'invalid_request_error';
    return "empty message: $body"
        unless !ref $e->{message} && length $e->{message};
    return "param is not $c->{param}: $body"
        if defined $c->{param}
           && (!defined $e->{param} || $e->{param} ne $c->{param});
    return "code is not $c->{code}: $body"
        if defined $c->{code}
           && (!defined $e->{code} || $e->{code} ne $c->{code});
    return "param is not a string or null: $body" if ref $e->{param};
    return "code is not a string or null: $body" if ref $e->{code};
    return undef;
}


my @cases = load_corpus();
my $config = <<'_EOC_';
    client_body_buffer_size 16k;

    location /v1/ {
        llm_gateway on;
        llm_max_body_size 256k;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
_EOC_

my $no_error_log = "[error]\n[crit]\n[alert]\n[emerg]\nexited on signal\n";
my $spec = '';
my $n = 0;

for my $c (@cases) {
    $Case{$c->{id}} = $c;
    $n++;

    my $want = $c->{status} =~ /^\d+$/ ? $c->{status} : 200;
    my $ctype = $c->{status} eq 'stream' ? 'text/event-stream'
                                         : 'application/json';

    $spec .= "=== TEST $n: $c->{id} ($c->{status})\n";
    $spec .= "--- config\n$config" if $n == 1;
    $spec .= "--- raw_request eval\nmain::raw_request('$c->{id}')\n";
    $spec .= "--- error_code: $want\n";
    $spec .= "--- response_headers\nContent-Type: $ctype\n";
    $spec .= "x-mock-instance: mock\n" if $want == 200;
    $spec .= "--- response_body_filters eval\nmain::verdict_for('$c->{id}')\n";
    $spec .= "--- response_body eval\n\"ok\\n\"\n";
    $spec .= "--- no_error_log\n$no_error_log\n";
}

# afterwards the same nginx still serves good requests

$n++;
$spec .= <<"_EOS_";
=== TEST $n: a good OpenAI request after the corpus
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_body_like: "object":"chat.completion"
--- no_error_log
$no_error_log
_EOS_

$n++;
$spec .= <<"_EOS_";
=== TEST $n: a good Anthropic request after the corpus
--- request
POST /v1/messages
{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_body_like: "type":"message"
--- no_error_log
$no_error_log
_EOS_

spec_string($spec);

run_tests();
