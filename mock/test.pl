#!/usr/bin/perl
# Tests of llm-mock: starts it on ports 18100-18103 (LLM_MOCK_TEST_PORT
# moves them) and a unix socket,
# talks raw HTTP (and curl where a real client matters), checks shapes,
# streaming, timing, prefix cache, faults, cancellation and the CLI.
# Prints "mock: N passed, M failed" last; exits non-zero on any failure.

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use JSON::PP;
use MIME::Base64;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use File::Temp qw(tempdir);
use FindBin;

my $BIN  = $ENV{LLM_MOCK} // "$FindBin::Bin/llm-mock";
my $TMP  = tempdir("llm-mock-test-XXXXXX", TMPDIR => 1, CLEANUP => 1);
my $PID_FILE = "$TMP/mock.pid";
my $LOG  = "$TMP/mock.log";
my $SOCK = "$TMP/mock.sock";
my $PORT = $ENV{LLM_MOCK_TEST_PORT} // 18100;     # and the next 3
my ($MAIN, $SLOW, $BUSY, $AUX) = ($PORT, $PORT + 1, $PORT + 2, $PORT + 3);
my $started = time;
my ($pass, $fail) = (0, 0);
my $mock_pid;

$SIG{PIPE} = 'IGNORE';

sub ok {
    my ($cond, $name, $diag) = @_;
    if ($cond) {
        $pass++;
        print "ok - $name\n";
    } else {
        $fail++;
        print "not ok - $name\n";
        print "  # $diag\n" if defined $diag;
    }
    return $cond;
}

sub is_eq {
    my ($got, $want, $name) = @_;
    $got  = '(undef)' unless defined $got;
    $want = '(undef)' unless defined $want;
    return ok($got eq $want, $name, "got '$got', want '$want'");
}

# ---- a small HTTP client -------------------------------------------------

sub connect_to {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 3)
        or die "connect $port: $!";
    return $s;
}

sub request_text {
    my (%a) = @_;
    my $ver  = $a{version} // '1.1';
    my $body = $a{body} // '';
    my $t = "$a{method} $a{path} HTTP/$ver\r\nHost: 127.0.0.1\r\n";
    for my $h (@{$a{headers} // []}) {
        $t .= "$h->[0]: $h->[1]\r\n";
    }
    if ($a{chunked}) {
        $t .= "Transfer-Encoding: chunked\r\n\r\n";
        for my $piece (@{$a{chunked}}) {
            $t .= sprintf("%x\r\n%s\r\n", length $piece, $piece);
        }
        $t .= "0\r\n\r\n";
    } else {
        $t .= "Content-Length: " . length($body) . "\r\n"
            if length $body || $a{method} eq 'POST';
        $t .= "\r\n$body";
    }
    return $t;
}

# bytes read past a response, kept for the next one (pipelining)
my %LEFT;

# Reads one response; records when the head and each chunk arrived.
sub read_response {
    my ($s, $timeout, $t0) = @_;
    $timeout //= 5;
    $t0 //= time;
    my $r = { chunks => [], body => '', eof => 0, error => '', t0 => $t0 };
    my $buf = delete $LEFT{"$s"} // '';
    my $sel = IO::Select->new($s);
    my $deadline = time + $timeout;
    my ($head_done, $cl, $chunked) = (0, undef, 0);

    for (;;) {
        # parse what we have
        if (!$head_done && $buf =~ /\r\n\r\n/) {
            my $end = index($buf, "\r\n\r\n");
            my @lines = split /\r\n/, substr($buf, 0, $end);
            $buf = substr($buf, $end + 4);
            my $sl = shift @lines;
            ($r->{status}) = $sl =~ m{^HTTP/1\.\d (\d{3})};
            $r->{status_line} = $sl;
            for (@lines) {
                my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
                $r->{headers}{lc $k} = $v;
            }
            $r->{t_head} = time - $t0;
            $head_done = 1;
            $chunked = lc($r->{headers}{'transfer-encoding'} // '')
                       eq 'chunked';
            $cl = $r->{headers}{'content-length'};
            if ($r->{status} =~ /^1/) {
                $r->{complete} = 1;     # 100 Continue: a head alone
                $LEFT{"$s"} = $buf;
                return $r;
            }
        }
        if ($head_done) {
            if ($chunked) {
                while ($buf =~ /^([0-9a-fA-F]+)\r\n/) {
                    my $size = hex $1;
                    my $hl = length($1) + 2;
                    last if length($buf) < $hl + $size + 2;
                    if ($size == 0) {
                        $r->{complete} = 1;
                        $LEFT{"$s"} = substr($buf, $hl + 2);
                        last;
                    }
                    my $data = substr($buf, $hl, $size);
                    push @{$r->{chunks}}, [time - $t0, $data];
                    $r->{body} .= $data;
                    $buf = substr($buf, $hl + $size + 2);
                }
                return $r if $r->{complete};
            } elsif (defined $cl) {
                if (length($buf) >= $cl) {
                    $r->{body} = substr($buf, 0, $cl);
                    $LEFT{"$s"} = substr($buf, $cl);
                    $r->{complete} = 1;
                    return $r;
                }
            } elsif ($r->{eof}) {
                $r->{body} .= $buf;
                $r->{complete} = 1;
                return $r;
            } elsif (length $buf) {
                # close-delimited: keep times of arrivals
                push @{$r->{chunks}}, [time - $t0, $buf];
                $r->{body} .= $buf;
                $buf = '';
            }
        }
        return $r if $r->{eof} || $r->{error};

        my $left = $deadline - time;
        if ($left <= 0 || !$sel->can_read($left)) {
            $r->{timeout} = 1;
            $r->{rest} = $buf;
            return $r;
        }
        my $n = sysread($s, my $data, 65536);
        if (!defined $n) {
            $r->{error} = "$!";
        } elsif ($n == 0) {
            $r->{eof} = 1;
            $r->{rest} = $buf if $head_done && ($chunked || defined $cl);
        } else {
            $buf .= $data;
        }
    }
}

sub http {
    my ($port, $method, $path, $body, %o) = @_;
    my $s = connect_to($port);
    my $t0 = time;
    print $s request_text(method => $method, path => $path, body => $body,
                          %o);
    my $r = read_response($s, $o{timeout}, $t0);
    close $s;
    return $r;
}

sub post { my ($port, $path, $obj, %o) = @_;
           return http($port, 'POST', $path,
                       ref $obj ? encode_json($obj) : $obj, %o); }

sub json_of {
    my ($r) = @_;
    my $j = eval { decode_json($r->{body}) };
    return $j;
}

# SSE events of a streamed body: [ [event name or undef, data], ... ]
sub sse_events {
    my ($body) = @_;
    my @ev;
    for my $block (split /\n\n/, $body) {
        my ($name, $data);
        for my $line (split /\n/, $block) {
            $name = $1 if $line =~ /^event: (.*)$/;
            $data = $1 if $line =~ /^data: (.*)$/;
        }
        push @ev, [$name, $data] if defined $data || defined $name;
    }
    return @ev;
}

sub stats {
    my ($port) = @_;
    return json_of(http($port, 'GET', '/stats')) // {};
}

# polls /stats until $cond->($stats) holds, bounded
sub wait_stats {
    my ($port, $cond, $secs) = @_;
    my $deadline = time + ($secs // 3);
    my $st;
    do {
        $st = stats($port);
        return $st if $cond->($st);
        sleep 0.02;
    } while (time < $deadline);
    return $st;
}

sub chat { my (%x) = @_;
    return { model => $x{model} // 'gpt-test',
             messages => [{ role => 'user', content => $x{text}
                                                  // 'hello there' }],
             %{$x{extra} // {}} }; }

# ---- start and stop ------------------------------------------------------

sub start_mock {
    my @args = @_;
    unlink $PID_FILE;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>', $LOG or die;
        open STDOUT, '>', '/dev/null';
        exec $BIN, @args or die "exec: $!";
    }
    my $deadline = time + 5;
    while (!-s $PID_FILE && time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            die "llm-mock exited at start: " . `cat $LOG`;
        }
        sleep 0.01;
    }
    die "llm-mock did not start in 5 s" unless -s $PID_FILE;
    return $pid;
}

sub wait_exit {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        my $w = waitpid($pid, WNOHANG);
        return $? >> 8 if $w == $pid;
        sleep 0.01;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return -1;
}

END {
    if ($mock_pid) {
        kill 'KILL', $mock_pid;
        waitpid($mock_pid, 0);
    }
}

die "build llm-mock first (make -C mock)\n" unless -x $BIN;

$mock_pid = start_mock(
    '--listen', "127.0.0.1:$MAIN,name=main",
    '--listen', "127.0.0.1:$SLOW,name=slow,ttft_ms=20,prefill_us=1000,"
                . "block_tokens=16,cache_blocks=1024",
    '--listen', "127.0.0.1:$BUSY,name=busy,status=429,retry_after=7",
    '--listen', "unix:$SOCK,name=sock",
    '--tokens', '8', '--pid-file', $PID_FILE);

# ---- simple endpoints ----------------------------------------------------

{
    my $r = http($MAIN, 'GET', '/health');
    is_eq($r->{status}, 200, 'health: 200');
    is_eq($r->{body}, 'ok', 'health: body ok');
    is_eq($r->{headers}{'x-mock-instance'}, 'main', 'health: x-mock-instance');

    $r = http($MAIN, 'GET', '/v1/models');
    my $j = json_of($r);
    ok($j && $j->{object} eq 'list' && $j->{data}[0]{object} eq 'model',
       'models: list of models', $r->{body});

    $r = http($MAIN, 'GET', '/nope');
    $j = json_of($r);
    ok($r->{status} == 404 && $j && $j->{error}{message},
       'unknown path: 404 with an OpenAI error', $r->{body});

    $r = http($MAIN, 'GET', '/v1/chat/completions');
    is_eq($r->{status}, 405, 'GET on an API path: 405');
}

# ---- non-stream shapes ---------------------------------------------------

my $chat_body;
{
    my $r = post($MAIN, '/v1/chat/completions', chat());
    my $j = json_of($r);
    $chat_body = $r->{body};
    ok($r->{status} == 200 && $j, 'chat: 200 JSON', $r->{body});
    like_ct($r, 'application/json', 'chat');
    is_eq($j->{object}, 'chat.completion', 'chat: object');
    ok($j->{id} =~ /^chatcmpl-[0-9a-f]{16}$/, 'chat: id', $j->{id});
    is_eq($j->{created}, 1700000000, 'chat: fixed created');
    is_eq($j->{model}, 'gpt-test', 'chat: model echoed');
    my $c = $j->{choices}[0];
    is_eq($c->{message}{role}, 'assistant', 'chat: role');
    my @w = split ' ', $c->{message}{content};
    is_eq(scalar @w, 8, 'chat: 8 words for tokens=8');
    is_eq($c->{finish_reason}, 'stop', 'chat: finish_reason stop');
    my $u = $j->{usage};
    # "hello there": ceil(11 / 4) + 4 per message
    is_eq($u->{prompt_tokens}, 7, 'chat: prompt_tokens formula');
    is_eq($u->{completion_tokens}, 8, 'chat: completion_tokens');
    is_eq($u->{total_tokens}, 15, 'chat: total_tokens');
    is_eq($u->{prompt_tokens_details}{cached_tokens}, 0,
          'chat: cached_tokens 0 on a short prompt');
    is_eq($u->{completion_tokens_details}{reasoning_tokens}, 0,
          'chat: reasoning_tokens 0');

    $r = post($MAIN, '/v1/chat/completions',
              chat(extra => { max_tokens => 3 }));
    $j = json_of($r);
    is_eq(scalar(split ' ', $j->{choices}[0]{message}{content}), 3,
          'chat: max_tokens cuts the answer');
    is_eq($j->{choices}[0]{finish_reason}, 'length',
          'chat: finish_reason length');
    ok(index($chat_body, $j->{choices}[0]{message}{content}) > 0,
       'chat: the cut answer is a prefix of the full one');

    $r = post($MAIN, '/v1/chat/completions',
              chat(extra => { max_completion_tokens => 2 }));
    $j = json_of($r);
    is_eq($j->{usage}{completion_tokens}, 2, 'chat: max_completion_tokens');

    $r = post($MAIN, '/v1/chat/completions', chat(),
              headers => [['x-mock-tokens', 5]]);
    $j = json_of($r);
    is_eq($j->{usage}{completion_tokens}, 5, 'chat: x-mock-tokens');
}

sub like_ct {
    my ($r, $want, $what) = @_;
    ok(($r->{headers}{'content-type'} // '') =~ /^\Q$want\E/,
       "$what: Content-Type $want", $r->{headers}{'content-type'});
}

{
    my $r = post($MAIN, '/v1/completions',
                 { model => 'm', prompt => 'once upon a time' });
    my $j = json_of($r);
    is_eq($j->{object}, 'text_completion', 'completions: object');
    ok($j->{id} =~ /^cmpl-/, 'completions: id');
    is_eq(scalar(split ' ', $j->{choices}[0]{text}), 8,
          'completions: choices[0].text');
    is_eq($j->{choices}[0]{finish_reason}, 'stop',
          'completions: finish_reason');
    is_eq($j->{usage}{prompt_tokens}, 4, 'completions: prompt_tokens');

    $r = post($MAIN, '/v1/completions', { model => 'm' });
    is_eq($r->{status}, 400, 'completions: missing prompt is 400');
}

{
    my $r = post($MAIN, '/v1/embeddings',
                 { model => 'e', input => ['first text', 'second'] });
    my $j = json_of($r);
    is_eq($j->{object}, 'list', 'embeddings: object list');
    is_eq(scalar @{$j->{data}}, 2, 'embeddings: one per input');
    my $e = $j->{data}[1];
    is_eq($e->{object}, 'embedding', 'embeddings: data object');
    is_eq($e->{index}, 1, 'embeddings: index');
    is_eq(scalar @{$e->{embedding}}, 16, 'embeddings: 16 dimensions');
    my $norm = 0;
    $norm += $_ * $_ for @{$e->{embedding}};
    ok(abs($norm - 1) < 1e-3, 'embeddings: unit vector', $norm);
    is_eq($j->{usage}{prompt_tokens}, 5, 'embeddings: usage.prompt_tokens');
    is_eq($j->{usage}{total_tokens}, 5, 'embeddings: usage.total_tokens');
    ok(!exists $j->{usage}{completion_tokens},
       'embeddings: no completion tokens');

    $r = post($MAIN, '/v1/embeddings',
              { model => 'e', input => 'first text', dimensions => 8,
                encoding_format => 'base64' });
    $j = json_of($r);
    my @f = unpack('f<*', decode_base64($j->{data}[0]{embedding}));
    is_eq(scalar @f, 8, 'embeddings: base64 float32 with dimensions');
    my $r2 = post($MAIN, '/v1/embeddings',
                  { model => 'e', input => 'first text', dimensions => 8 });
    my $j2 = json_of($r2);
    ok(abs($f[3] - $j2->{data}[0]{embedding}[3]) < 1e-5,
       'embeddings: base64 and float agree');
}

{
    my $req = { model => 'claude-x', max_tokens => 100, system => 'sys',
                messages => [{ role => 'user', content =>
                    [{ type => 'text', text => 'hello there' }] }] };
    my $r = post($MAIN, '/v1/messages', $req);
    my $j = json_of($r);
    is_eq($j->{type}, 'message', 'messages: type message');
    ok($j->{id} =~ /^msg_/, 'messages: id');
    is_eq($j->{role}, 'assistant', 'messages: role');
    is_eq($j->{content}[0]{type}, 'text', 'messages: content[0].type');
    is_eq(scalar(split ' ', $j->{content}[0]{text}), 8,
          'messages: content[0].text');
    is_eq($j->{stop_reason}, 'end_turn', 'messages: stop_reason');
    ok(exists $j->{stop_sequence}, 'messages: stop_sequence');
    my $u = $j->{usage};
    is_eq($u->{input_tokens}, 8, 'messages: input_tokens (system + text)');
    is_eq($u->{output_tokens}, 8, 'messages: output_tokens');
    is_eq($u->{cache_read_input_tokens}, 0, 'messages: cache_read 0');
    is_eq($u->{cache_creation_input_tokens}, 0, 'messages: cache_creation 0');

    $req->{max_tokens} = 2;
    $j = json_of(post($MAIN, '/v1/messages', $req));
    is_eq($j->{stop_reason}, 'max_tokens', 'messages: stop_reason max_tokens');
}

# ---- errors --------------------------------------------------------------

{
    my $r = post($MAIN, '/v1/chat/completions', '{"model": "x", ');
    my $j = json_of($r);
    is_eq($r->{status}, 400, 'invalid JSON: 400');
    ok($j && $j->{error}{type} eq 'invalid_request_error'
       && exists $j->{error}{param} && exists $j->{error}{code}
       && $j->{error}{message} =~ /JSON/,
       'invalid JSON: OpenAI error shape', $r->{body});

    $r = post($MAIN, '/v1/messages', 'nope');
    $j = json_of($r);
    ok($r->{status} == 400 && $j && $j->{type} eq 'error'
       && $j->{error}{type} eq 'invalid_request_error',
       'invalid JSON: Anthropic error shape', $r->{body});

    $r = post($MAIN, '/v1/chat/completions', { model => 'x' });
    $j = json_of($r);
    ok($r->{status} == 400 && $j->{error}{message} =~ /messages/,
       'chat: missing messages is 400', $r->{body});

    $r = post($MAIN, '/v1/chat/completions', chat(extra =>
              { max_tokens => 'ten' }));
    is_eq($r->{status}, 400, 'chat: max_tokens of the wrong type is 400');

    $r = post($MAIN, '/v1/chat/completions', chat(),
              headers => [['x-mock-ttft-ms', 'soon']]);
    $j = json_of($r);
    ok($r->{status} == 400 && $j->{error}{message} =~ /x-mock-ttft-ms/,
       'bad x-mock header: 400 naming it', $r->{body});
}

# ---- streaming -----------------------------------------------------------

{
    my $r = post($MAIN, '/v1/chat/completions',
                 chat(extra => { stream => JSON::PP::true }));
    is_eq($r->{status}, 200, 'stream chat: 200');
    like_ct($r, 'text/event-stream', 'stream chat');
    is_eq($r->{headers}{'cache-control'}, 'no-cache',
          'stream chat: Cache-Control');
    is_eq($r->{headers}{'transfer-encoding'}, 'chunked',
          'stream chat: chunked');
    ok($r->{complete}, 'stream chat: terminating chunk');
    my @ev = sse_events($r->{body});
    is_eq(scalar @{$r->{chunks}}, scalar @ev, 'stream chat: one chunk per '
          . 'event');
    is_eq($ev[-1][1], '[DONE]', 'stream chat: [DONE] last');
    my @j = map { decode_json($_->[1]) } @ev[0 .. $#ev - 1];
    is_eq($j[0]{choices}[0]{delta}{role}, 'assistant',
          'stream chat: first delta has the role');
    is_eq($j[0]{choices}[0]{delta}{content}, '',
          'stream chat: first delta has empty content');
    is_eq($j[0]{object}, 'chat.completion.chunk', 'stream chat: object');
    my $text = join '', map { $_->{choices}[0]{delta}{content} // '' } @j;
    is_eq(scalar @j, 10, 'stream chat: role + 8 tokens + final');
    is_eq($j[-1]{choices}[0]{finish_reason}, 'stop',
          'stream chat: final finish_reason');
    is_eq(encode_json($j[-1]{choices}[0]{delta}), '{}',
          'stream chat: final delta empty');
    ok(!grep({ exists $_->{usage} } @j),
       'stream chat: no usage without include_usage');
    is_eq($text, decode_json($chat_body)->{choices}[0]{message}{content},
          'stream chat: same text as non-stream');
    is_eq($j[1]{id}, decode_json($chat_body)->{id},
          'stream chat: same id as non-stream');

    $r = post($MAIN, '/v1/chat/completions', chat(extra =>
              { stream => JSON::PP::true, max_tokens => 3,
                stream_options => { include_usage => JSON::PP::true } }));
    @ev = sse_events($r->{body});
    is_eq($ev[-1][1], '[DONE]', 'include_usage: [DONE] last');
    my $u = decode_json($ev[-2][1]);
    ok(ref $u->{choices} eq 'ARRAY' && @{$u->{choices}} == 0
       && $u->{usage}{completion_tokens} == 3
       && $u->{usage}{prompt_tokens} == 7
       && exists $u->{usage}{prompt_tokens_details}{cached_tokens},
       'include_usage: usage-only chunk before [DONE]', $ev[-2][1]);
    my $fin = decode_json($ev[-3][1]);
    is_eq($fin->{choices}[0]{finish_reason}, 'length',
          'include_usage: finish_reason length');
    ok(exists $fin->{usage} && !defined $fin->{usage},
       'include_usage: other chunks carry usage null');

    $r = post($MAIN, '/v1/completions', { prompt => 'abc', stream => 1 == 1
              ? JSON::PP::true : 0 });
    @ev = sse_events($r->{body});
    my @c = map { decode_json($_->[1]) } @ev[0 .. $#ev - 1];
    is_eq($c[0]{object}, 'text_completion', 'stream completions: object');
    is_eq(scalar @c, 9, 'stream completions: 8 tokens + final');
    ok($c[0]{choices}[0]{text} =~ /^\w+ $/, 'stream completions: text');
    is_eq($ev[-1][1], '[DONE]', 'stream completions: [DONE]');
}

{
    my $r = post($MAIN, '/v1/messages',
                 { model => 'c', max_tokens => 5, stream => JSON::PP::true,
                   messages => [{ role => 'user', content => 'hi' }] });
    my @ev = sse_events($r->{body});
    my @names = map { $_->[0] } @ev;
    is_eq("@names", 'message_start content_block_start ping '
          . ('content_block_delta ' x 5)
          . 'content_block_stop message_delta message_stop',
          'stream messages: event order');
    ok(!grep({ decode_json($_->[1])->{type} ne $_->[0] } @ev),
       'stream messages: data type matches event name');
    my $start = decode_json($ev[0][1]);
    my $su = $start->{message}{usage};
    ok(exists $su->{input_tokens} && exists $su->{cache_read_input_tokens}
       && exists $su->{cache_creation_input_tokens}
       && $su->{output_tokens} == 1,
       'stream messages: message_start usage', $ev[0][1]);
    my $d = decode_json($ev[3][1]);
    ok($d->{delta}{type} eq 'text_delta' && $d->{delta}{text} =~ /^\w+ $/,
       'stream messages: text_delta', $ev[3][1]);
    my $md = decode_json($ev[-2][1]);
    ok($md->{delta}{stop_reason} eq 'max_tokens'
       && $md->{usage}{output_tokens} == 5,
       'stream messages: message_delta', $ev[-2][1]);
}

# ---- determinism ---------------------------------------------------------

{
    my $a = post($MAIN, '/v1/chat/completions', chat(text => 'same'))->{body};
    my $b = post($MAIN, '/v1/chat/completions', chat(text => 'same'))->{body};
    my $c = post($MAIN, '/v1/chat/completions', chat(text => 'other'))->{body};
    is_eq($a, $b, 'determinism: same request, same bytes');
    ok($a ne $c, 'determinism: another prompt, another answer');
    my $d = post($SLOW, '/v1/chat/completions',
                 chat(text => 'same'))->{body};
    ok(decode_json($d)->{choices}[0]{message}{content}
       eq decode_json($a)->{choices}[0]{message}{content},
       'determinism: same answer from another instance');
}

# ---- timing --------------------------------------------------------------

{
    my $r = post($MAIN, '/v1/chat/completions',
                 chat(text => 'timing', extra => { stream => JSON::PP::true }),
                 headers => [['x-mock-ttft-ms', 300], ['x-mock-itl-ms', 50],
                             ['x-mock-tokens', 4]]);
    my @ch = @{$r->{chunks}};
    ok($r->{t_head} < 0.15, 'timing: SSE headers sent at once',
       $r->{t_head});
    ok($ch[0][0] >= 0.29, 'timing: first event after TTFT', $ch[0][0]);
    ok($ch[1][0] - $ch[0][0] < 0.02,
       'timing: role chunk and first token together');
    ok($ch[4][0] - $ch[1][0] >= 0.14, 'timing: one token per ITL',
       $ch[4][0] - $ch[1][0]);
    ok($ch[4][0] < 1.0, 'timing: not too slow', $ch[4][0]);

    my $t0 = time;
    $r = post($MAIN, '/v1/chat/completions', chat(text => 'timing2'),
              headers => [['x-mock-ttft-ms', 200], ['x-mock-itl-ms', 20],
                          ['x-mock-tokens', 4]]);
    my $dt = time - $t0;
    ok($dt >= 0.25 && $dt < 1.0,
       'timing: non-stream answers at TTFT + (n - 1) * ITL', $dt);
}

# ---- prefix cache --------------------------------------------------------

{
    # ~2000 bytes: about 500 tokens, 1 ms of prefill each on "slow"
    my $long = join ' ', map { "word$_" } 1 .. 300;
    my $req = chat(text => $long, extra => { stream => JSON::PP::true,
                   stream_options => { include_usage => JSON::PP::true } });
    my $usage = sub {
        my ($r) = @_;
        my @ev = sse_events($r->{body});
        return decode_json($ev[-2][1])->{usage};
    };
    my $r1 = post($SLOW, '/v1/chat/completions', $req);
    my $r2 = post($SLOW, '/v1/chat/completions', $req);
    my ($u1, $u2) = ($usage->($r1), $usage->($r2));
    is_eq($u1->{prompt_tokens_details}{cached_tokens}, 0,
          'prefix cache: first request has nothing cached');
    ok($u2->{prompt_tokens_details}{cached_tokens} > 0
       && $u2->{prompt_tokens_details}{cached_tokens}
          <= $u2->{prompt_tokens},
       'prefix cache: second request reports cached tokens',
       $u2->{prompt_tokens_details}{cached_tokens});
    my ($f1, $f2) = ($r1->{chunks}[0][0], $r2->{chunks}[0][0]);
    ok($f1 > 0.3 && $f2 < $f1 - 0.2,
       'prefix cache: cached prompt has a shorter TTFT', "$f1 vs $f2");

    # same prefix, new tail: partly cached
    my $req3 = chat(text => "$long and a new tail that differs");
    my $j3 = json_of(post($SLOW, '/v1/chat/completions', $req3));
    my $c3 = $j3->{usage}{prompt_tokens_details}{cached_tokens};
    ok($c3 > 0 && $c3 < $j3->{usage}{prompt_tokens},
       'prefix cache: shared prefix partly cached', $c3);

    # another model does not share the cache
    my $j4 = json_of(post($SLOW, '/v1/chat/completions',
                          chat(text => $long, model => 'other-model')));
    is_eq($j4->{usage}{prompt_tokens_details}{cached_tokens}, 0,
          'prefix cache: keyed by model');

    my $j5 = json_of(post($SLOW, '/v1/messages',
                          { model => 'gpt-test', max_tokens => 4,
                            messages => [{ role => 'user',
                                           content => $long }] }));
    ok($j5->{usage}{cache_read_input_tokens} > 0
       && $j5->{usage}{cache_creation_input_tokens} == 0
       && $j5->{usage}{input_tokens} + $j5->{usage}{cache_read_input_tokens}
          == $u1->{prompt_tokens},
       'prefix cache: Anthropic cache_read_input_tokens',
       encode_json($j5->{usage}));

    my $m = http($SLOW, 'GET', '/metrics')->{body};
    my ($hits) =
        $m =~ /^vllm:prefix_cache_hits_total\{model_name="mock"\} (\d+)/m;
    ok($hits && $hits > 0, 'prefix cache: hits in /metrics', $hits);
    is_eq(json_of(http($MAIN, 'GET', '/stats'))->{instance}, 'main',
          'stats: instance name');
    is_eq(stats($MAIN)->{prefix_cache_hits_total}, 0,
          'prefix cache: per instance');
}

# ---- faults --------------------------------------------------------------

{
    my $r = post($MAIN, '/v1/chat/completions', chat(),
                 headers => [['x-mock-status', 429],
                             ['x-mock-retry-after', 3]]);
    my $j = json_of($r);
    is_eq($r->{status}, 429, 'fault status: 429');
    is_eq($r->{headers}{'retry-after'}, 3, 'fault status: Retry-After');
    is_eq($r->{headers}{'x-ratelimit-remaining-requests'}, 0,
          'fault status: x-ratelimit-remaining-requests');
    is_eq($r->{headers}{'x-ratelimit-reset-requests'}, '3s',
          'fault status: x-ratelimit-reset-requests');
    ok($j && $j->{error}{message} && exists $j->{error}{type},
       'fault status: OpenAI error body', $r->{body});

    $r = post($MAIN, '/v1/messages', { messages => [] },
              headers => [['x-mock-status', 529]]);
    $j = json_of($r);
    ok($r->{status} == 529 && $j->{type} eq 'error'
       && $j->{error}{type} eq 'overloaded_error',
       'fault status: 529 in Anthropic shape', $r->{body});

    $r = post($MAIN, '/v1/chat/completions', chat(),
              headers => [['x-mock-status', 503]]);
    ok($r->{status} == 503 && !exists $r->{headers}{'retry-after'},
       'fault status: 503 without Retry-After');

    $r = post($BUSY, '/v1/chat/completions', chat());
    ok($r->{status} == 429 && $r->{headers}{'retry-after'} eq '7',
       'instance status=429,retry_after=7', $r->{status_line});
    is_eq($r->{headers}{'x-mock-instance'}, 'busy',
          'instance status: its name');
    $r = post($BUSY, '/v1/chat/completions', chat(),
              headers => [['x-mock-status', 200]]);
    is_eq($r->{status}, 200, 'instance status: x-mock-status 200 overrides');
    is_eq(http($BUSY, 'GET', '/health')->{status}, 200,
          'instance status: /health still 200');
}

{
    my $r = post($MAIN, '/v1/chat/completions',
                 chat(extra => { stream => JSON::PP::true }),
                 headers => [['x-mock-fault', 'sse-error']]);
    my @ev = sse_events($r->{body});
    my $j = eval { decode_json($ev[0][1]) };
    ok($r->{status} == 200 && @ev == 1 && $j && $j->{error}{message}
       && $j->{error}{type}, 'sse-error: OpenAI error event', $r->{body});

    $r = post($MAIN, '/v1/messages', { max_tokens => 9, stream =>
              JSON::PP::true, messages => [] },
              headers => [['x-mock-fault', 'sse-error'],
                          ['x-mock-fault-after', 2]]);
    @ev = sse_events($r->{body});
    my @names = map { $_->[0] } @ev;
    is_eq("@names", 'message_start content_block_start ping '
          . 'content_block_delta content_block_delta error',
          'sse-error: Anthropic error event after 2 tokens');
    $j = eval { decode_json($ev[-1][1]) };
    ok($j && $j->{type} eq 'error' && $j->{error}{type},
       'sse-error: Anthropic error shape');
}

{
    my $r = post($MAIN, '/v1/chat/completions',
                 chat(extra => { stream => JSON::PP::true }),
                 headers => [['x-mock-fault', 'close-mid-stream'],
                             ['x-mock-itl-ms', 10]]);
    my @ev = sse_events($r->{body});
    my @tok = grep { ($_->[1] // '') =~ /"content":"\w+ "/ } @ev;
    ok($r->{eof} && !$r->{complete}, 'close-mid-stream: closed without the '
       . 'terminating chunk');
    is_eq(scalar @tok, 2, 'close-mid-stream: 2 token events (default)');
    ok(!grep({ $_->[1] eq '[DONE]' } @ev), 'close-mid-stream: no [DONE]');

    $r = post($MAIN, '/v1/chat/completions',
              chat(extra => { stream => JSON::PP::true }),
              headers => [['x-mock-fault', 'close-mid-stream'],
                          ['x-mock-fault-after', 5]]);
    @tok = grep { ($_->[1] // '') =~ /"content":"\w+ "/ }
           sse_events($r->{body});
    is_eq(scalar @tok, 5, 'close-mid-stream: x-mock-fault-after');

    my $out = `curl -s -N --max-time 5 -H 'x-mock-fault: close-mid-stream' \\
               -d '{"stream":true,"messages":[]}' \\
               http://127.0.0.1:$MAIN/v1/chat/completions 2>&1`;
    my $rc = $? >> 8;
    ok($rc == 18, 'close-mid-stream: curl sees a truncated transfer', $rc);

    $r = post($MAIN, '/v1/chat/completions', chat(),
              headers => [['x-mock-fault', 'close-mid-stream']]);
    ok($r->{eof} && !$r->{complete} && $r->{status} == 200,
       'close-mid-stream: non-stream body cut');
}

{
    my $t0 = time;
    my $out = `curl -s -i -N --max-time 1 -H 'x-mock-fault: hang-first-token' \\
               -d '{"stream":true,"messages":[]}' \\
               http://127.0.0.1:$MAIN/v1/chat/completions 2>&1`;
    my $rc = $? >> 8;
    ok($rc == 28, 'hang-first-token: curl times out', $rc);
    ok($out =~ m{^HTTP/1.1 200} && $out =~ m{text/event-stream}
       && $out !~ /data:/, 'hang-first-token: SSE headers, no event', $out);
    ok(time - $t0 < 3, 'hang-first-token: bounded by --max-time');

    my $s = connect_to($MAIN);
    print $s request_text(method => 'POST', path => '/v1/chat/completions',
                          body => '{}',
                          headers => [['x-mock-fault', 'hang-headers']]);
    my $r = read_response($s, 0.5);
    ok($r->{timeout} && !defined $r->{status},
       'hang-headers: no answer at all');
    close $s;
}

{
    my $r = post($MAIN, '/v1/chat/completions',
                 chat(extra => { stream => JSON::PP::true }),
                 headers => [['x-mock-fault', 'malformed-sse']]);
    my @ev = sse_events($r->{body});
    my $bad = grep { defined $_->[1] && $_->[1] ne '[DONE]'
                     && !eval { decode_json($_->[1]); 1 } } @ev;
    ok($bad >= 1, 'malformed-sse: bad JSON in a data line');
    ok($r->{body} =~ /^this is not an sse line/m,
       'malformed-sse: a garbage line');
    is_eq($ev[-1][1], '[DONE]', 'malformed-sse: the stream goes on');
    my @tok = grep { ($_->[1] // '') =~ /"content":"\w+ "/ } @ev;
    is_eq(scalar @tok, 8, 'malformed-sse: all tokens still sent');

    $r = post($MAIN, '/v1/chat/completions', chat(),
              headers => [['x-mock-fault', 'malformed-sse']]);
    ok($r->{status} == 200 && $r->{complete} && !json_of($r),
       'malformed-sse: non-stream body is invalid JSON');
}

{
    my $s = connect_to($MAIN);
    print $s request_text(method => 'POST', path => '/v1/chat/completions',
                          body => '{}', headers => [['x-mock-fault', 'reset']]);
    my $r = read_response($s, 2);
    ok($r->{error} =~ /reset/i, 'reset: connection reset by peer',
       $r->{error} || 'eof');
    close $s;

    my $before = stats($MAIN)->{aborted_total};
    $r = post($MAIN, '/v1/chat/completions',
              chat(extra => { stream => JSON::PP::true }),
              headers => [['x-mock-fault', 'reset'], ['x-mock-itl-ms', 30],
                          ['x-mock-fault-after', 3]]);
    my @tok = grep { ($_->[1] // '') =~ /"content":"\w+ "/ }
              sse_events($r->{body});
    ok($r->{error} =~ /reset/i && @tok == 3,
       'reset: mid-stream after x-mock-fault-after tokens',
       ($r->{error} || 'no error') . ", " . scalar @tok . " tokens");
    is_eq(stats($MAIN)->{aborted_total}, $before + 1,
          'reset: counted as aborted');
}

{
    my $body = '{"model":"x","weird":  [1, 2 ,3], "u":"\u00e9"}';
    my $r = post($MAIN, '/v1/chat/completions', $body,
                 headers => [['x-mock-echo', 1]]);
    is_eq($r->{body}, $body, 'echo: the body, byte for byte');
    is_eq($r->{headers}{'x-mock-body-bytes'}, length $body,
          'echo: x-mock-body-bytes');
    like_ct($r, 'application/json', 'echo');

    $r = http($MAIN, 'POST', '/anything', undef,
              chunked => ['{"a":', '1}'],
              headers => [['x-mock-echo', 1]]);
    is_eq($r->{body}, '{"a":1}', 'echo: a chunked request body, decoded');

    $r = post($MAIN, '/v1/messages', '{}',
              headers => [['x-mock-echo', 'headers'],
                          ['Authorization', 'Bearer sk-test']]);
    ok($r->{body} =~ m{^POST /v1/messages HTTP/1.1\r\n}
       && $r->{body} =~ /^Authorization: Bearer sk-test\r$/m,
       'echo headers: the request head', $r->{body});
}

# ---- cancellation --------------------------------------------------------

{
    my $st0 = stats($MAIN);

    # mid-stream
    my $s = connect_to($MAIN);
    print $s request_text(method => 'POST', path => '/v1/chat/completions',
                          body => encode_json(chat(extra =>
                                     { stream => JSON::PP::true })),
                          headers => [['x-mock-ttft-ms', 20],
                                      ['x-mock-itl-ms', 100],
                                      ['x-mock-tokens', 50]]);
    my $sel = IO::Select->new($s);
    my $got = '';
    my $deadline = time + 3;
    while ($got !~ /"content":"\w+ "/ && time < $deadline) {
        last unless $sel->can_read(1);
        sysread($s, $got, 65536, length $got) or last;
    }
    ok($got =~ /"content":"\w+ "/, 'cancel: stream started');
    my $mid = stats($MAIN);
    is_eq($mid->{requests_running}, 1, 'cancel: running while streaming');
    close $s;
    my $st = wait_stats($MAIN, sub { $_[0]{cancelled_total}
                                     == $st0->{cancelled_total} + 1 });
    is_eq($st->{cancelled_total}, $st0->{cancelled_total} + 1,
          'cancel: mid-stream close counted in /stats');
    is_eq($st->{requests_running}, 0, 'cancel: running back to 0');

    # while waiting for the first token
    $s = connect_to($MAIN);
    print $s request_text(method => 'POST', path => '/v1/chat/completions',
                          body => encode_json(chat()),
                          headers => [['x-mock-ttft-ms', 5000]]);
    $st = wait_stats($MAIN, sub { $_[0]{requests_waiting} == 1 });
    is_eq($st->{requests_waiting}, 1, 'cancel: waiting before TTFT');
    close $s;
    $st = wait_stats($MAIN, sub { $_[0]{cancelled_total}
                                  == $st0->{cancelled_total} + 2 });
    is_eq($st->{cancelled_total}, $st0->{cancelled_total} + 2,
          'cancel: close before TTFT counted');
    is_eq($st->{requests_waiting}, 0, 'cancel: waiting back to 0');
    ok($st->{requests_total} == $st->{completed_total}
       + $st->{cancelled_total} + $st->{aborted_total},
       'stats: requests = completed + cancelled + aborted',
       encode_json($st));

    my $m = http($MAIN, 'GET', '/metrics')->{body};
    for my $name (qw(vllm:num_requests_running vllm:num_requests_waiting
                     vllm:prompt_tokens_total vllm:generation_tokens_total
                     vllm:prefix_cache_queries_total
                     vllm:prefix_cache_hits_total)) {
        ok($m =~ /^\Q$name\E\{model_name="mock"\} \d/m,
           "metrics: $name");
    }
    for my $name (qw(mock_requests_total mock_cancelled_total
                     mock_completed_total)) {
        ok($m =~ /^$name \d+$/m, "metrics: $name");
    }
    ok($m =~ /^mock_cancelled_total $st->{cancelled_total}$/m,
       'metrics: cancelled count agrees with /stats');
}

# ---- HTTP ----------------------------------------------------------------

{
    # keepalive and pipelining on one connection
    my $s = connect_to($MAIN);
    my $one = request_text(method => 'POST', path => '/v1/completions',
                           body => '{"prompt":"a"}');
    print $s $one;
    my $r1 = read_response($s, 2);
    print $s $one . $one;
    my $r2 = read_response($s, 2);
    my $r3 = read_response($s, 2);
    ok($r1->{status} == 200 && $r2->{status} == 200 && $r3->{status} == 200
       && $r3->{body} eq $r1->{body}, 'keepalive and pipelining');
    close $s;

    # HTTP/1.0: close-delimited stream
    $s = connect_to($MAIN);
    print $s request_text(method => 'POST', path => '/v1/chat/completions',
                          version => '1.0',
                          body => encode_json(chat(extra =>
                                     { stream => JSON::PP::true })));
    my $r = read_response($s, 3);
    ok($r->{eof} && !exists $r->{headers}{'transfer-encoding'}
       && !exists $r->{headers}{'content-length'}
       && $r->{body} =~ /data: \[DONE\]\n\n$/,
       'HTTP/1.0 stream: close-delimited', $r->{status_line});
    close $s;

    # HTTP/1.0 keep-alive, non-stream
    $s = connect_to($MAIN);
    my $ka = request_text(method => 'GET', path => '/health', version => '1.0',
                          headers => [['Connection', 'keep-alive']]);
    print $s $ka;
    $r1 = read_response($s, 2);
    print $s $ka;
    $r2 = read_response($s, 2);
    ok($r1->{headers}{connection} eq 'keep-alive' && $r2->{status} == 200,
       'HTTP/1.0 keep-alive');
    close $s;

    # curl -0 decodes it too
    my $out = `curl -s -0 -d '{"stream":true,"messages":[]}' \\
               http://127.0.0.1:$MAIN/v1/chat/completions`;
    ok($out =~ /data: \[DONE\]\n\n$/, 'HTTP/1.0 stream through curl');

    # garbage
    $s = connect_to($MAIN);
    print $s "\x01\x02 this is not HTTP\r\n\r\n";
    $r = read_response($s, 2);
    ok($r->{status} == 400 && ($r->{headers}{connection} // '') eq 'close',
       'garbage: 400 and close', $r->{status_line});
    close $s;

    # Expect: 100-continue
    $s = connect_to($MAIN);
    my $body = encode_json(chat());
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
           . "Expect: 100-continue\r\nContent-Length: " . length($body)
           . "\r\n\r\n";
    my $cont = read_response($s, 1);
    is_eq($cont->{status}, 100, 'Expect: 100-continue answered');
    print $s $body;
    $r = read_response($s, 2);
    is_eq($r->{status}, 200, 'Expect: then the answer');
    close $s;

    # a big body through curl, which chooses its own framing
    my $big = '{"messages":[{"role":"user","content":"' . ('x' x 2000000)
              . '"}]}';
    open my $fh, '>', "$TMP/big.json";
    print $fh $big;
    close $fh;
    $out = `curl -s --max-time 5 -d \@$TMP/big.json \\
            http://127.0.0.1:$MAIN/v1/chat/completions`;
    my $j = eval { decode_json($out) };
    is_eq($j && $j->{usage}{prompt_tokens}, 500004,
          'a 2 MB body through curl');

    # unix socket listener
    $out = `curl -s -i --unix-socket $SOCK http://x/health`;
    ok($out =~ /x-mock-instance: sock/ && $out =~ /ok$/,
       'unix socket listener');
}

# ---- instances -----------------------------------------------------------

{
    my %names;
    for my $p ($MAIN, $SLOW, $BUSY) {
        $names{http($p, 'GET', '/health')->{headers}{'x-mock-instance'}} = 1;
    }
    is_eq(join(',', sort keys %names), 'busy,main,slow',
          'instances: distinct x-mock-instance');
    my $a = stats($SLOW)->{requests_total};
    post($MAIN, '/v1/completions', { prompt => 'x' });
    is_eq(stats($SLOW)->{requests_total}, $a, 'instances: own counters');

    my $r = post($BUSY, '/v1/completions', { prompt => 'x' });
    is_eq($r->{headers}{'x-mock-instance'}, 'busy',
          'instances: status applies per instance');
}

# x-mock-inflight: own/total at the arrival, the arrival counted
{
    my $hold = sub {        # a request held 400 ms before its answer
        my ($port) = @_;
        my $s = connect_to($port);
        print $s request_text(method => 'POST', path => '/v1/completions',
                              body => encode_json({ prompt => 'held' }),
                              headers => [['x-mock-ttft-ms', 400]]);
        return $s;
    };

    is_eq(post($MAIN, '/v1/completions', { prompt => 'x' })
              ->{headers}{'x-mock-inflight'}, '1/1',
          'inflight: alone');
    my $s1 = $hold->($MAIN);
    my $s2 = $hold->($SLOW);
    wait_stats($SLOW, sub { $_[0]{requests_waiting} == 1 });
    wait_stats($MAIN, sub { $_[0]{requests_waiting} == 1 });
    is_eq(post($MAIN, '/v1/completions', { prompt => 'x' })
              ->{headers}{'x-mock-inflight'}, '2/3',
          'inflight: own instance and all instances');
    is_eq(post($BUSY, '/v1/completions', { prompt => 'x' })
              ->{headers}{'x-mock-inflight'}, '1/3',
          'inflight: an error answer counts too');
    my $r1 = read_response($s1);
    my $r2 = read_response($s2);
    close $s1;
    close $s2;
    is_eq($r1->{headers}{'x-mock-inflight'}, '1/1',
          'inflight: the first arrival');
    is_eq($r2->{headers}{'x-mock-inflight'}, '1/2',
          'inflight: the second arrival, on another instance');

    # a cancelled request leaves the counts
    my $s3 = $hold->($MAIN);
    wait_stats($MAIN, sub { $_[0]{requests_waiting} == 1 });
    close $s3;
    wait_stats($MAIN, sub { $_[0]{requests_waiting} == 0 });
    is_eq(post($MAIN, '/v1/completions', { prompt => 'x' })
              ->{headers}{'x-mock-inflight'}, '1/1',
          'inflight: back to 1/1 after answers and a cancel');
    ok(!defined http($MAIN, 'GET', '/health')->{headers}{'x-mock-inflight'},
       'inflight: not on /health');
}

# ---- many concurrent connections -----------------------------------------

{
    my $want = 2100;
    my $limit = `sh -c 'ulimit -n'` + 0;
    $want = $limit - 100 if $limit && $limit < $want + 100;
    my @socks;
    my $req = request_text(method => 'POST', path => '/v1/completions',
                           body => '{"prompt":"many"}',
                           headers => [['x-mock-ttft-ms', 700]]);
    for (1 .. $want) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $MAIN, Proto => 'tcp')
            or last;
        print $s $req;
        push @socks, $s;
    }
    my $st = wait_stats($MAIN, sub { $_[0]{requests_waiting} >= @socks }, 5);
    ok(@socks >= 2000 && $st->{requests_waiting} == @socks,
       "concurrency: " . scalar(@socks) . " requests in flight at once",
       "waiting=$st->{requests_waiting} limit=$limit");
    my $okc = 0;
    for my $s (@socks) {
        my $r = read_response($s, 5);
        $okc++ if ($r->{status} // 0) == 200;
        close $s;
    }
    is_eq($okc, scalar @socks, 'concurrency: all answered');
}

# ---- command line and signals --------------------------------------------

{
    my @bad = (
        [[], qr/--listen/, 'no --listen'],
        [['--listen', '127.0.0.1:notaport'], qr/port/, 'bad port'],
        [['--listen', '127.0.0.1:18150,colour=red'], qr/colour/,
         'unknown listen option'],
        [['--listen', '127.0.0.1:18150,ttft_ms=-5'], qr/ttft_ms/,
         'bad listen value'],
        [['--listen', '127.0.0.1:18150,fault=explode'], qr/explode/,
         'bad fault'],
        [['--listen', '127.0.0.1:18150', '--itl-ms', 'x'], qr/--itl-ms/,
         'bad global value'],
        [['--listen', '127.0.0.1:18150', '--frobnicate', '1'],
         qr/--frobnicate/, 'unknown flag'],
        [['--listen', '127.0.0.1:18150,name=a b'], qr/name/, 'bad name'],
    );
    for my $b (@bad) {
        my @args = map { "'$_'" } @{$b->[0]};
        my $err = `$BIN @args 2>&1 >/dev/null`;
        my $rc = $? >> 8;
        ok($rc == 2 && $err =~ $b->[1], "CLI: $b->[2] exits 2",
           "rc=$rc: $err");
    }

    my $log = do { local $/; open my $f, '<', $LOG; <$f> };
    ok($log =~ m{^llm-mock\[main\] POST /v1/chat/completions 200 completed }m,
       'log: one line per request');

    kill 'TERM', $mock_pid;
    my $rc = wait_exit($mock_pid, 3);
    $mock_pid = undef;
    is_eq($rc, 0, 'SIGTERM: clean exit 0');
    ok(!-e $PID_FILE && !-e $SOCK, 'SIGTERM: pid file and socket removed');

    my $pid = start_mock('--listen', "127.0.0.1:$AUX", '--quiet',
                         '--pid-file', $PID_FILE);
    $mock_pid = $pid;
    is_eq(http($AUX, 'GET', '/health')->{headers}{'x-mock-instance'}, $AUX,
          'default name is the port');
    kill 'INT', $pid;
    is_eq(wait_exit($pid, 3), 0, 'SIGINT: clean exit 0');
    $mock_pid = undef;
}

printf "# %.1f s\n", time - $started;
print "mock: $pass passed, $fail failed\n";
exit($fail ? 1 : 0);
