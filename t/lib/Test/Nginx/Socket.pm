package Test::Nginx::Socket;

# Fallback implementation of openresty's Test::Nginx::Socket (see Util.pm
# beside it for the scope).  A suite says
#
#     use Test::Nginx::Socket;
#     plan tests => repeat_each() * 2 * blocks();
#     run_tests();
#     __DATA__
#     === TEST 1: ...
#
# and runs unchanged under this module or upstream's.  This file builds the
# requests of a block, talks HTTP/1.x over a plain TCP socket and runs the
# response and log checks, emitting the same tests (number, order, names)
# as upstream does.

use strict;
use warnings;

# Subclass Test::Base without Spiffy's source filter; its import exports
# Test::Base's functions (plan, blocks, is, like, ...) together with ours.
use Test::Base -base;

use Encode ();
use Digest::MD5 ();
use Digest::SHA ();
use HTTP::Response ();
use IO::Select ();
use IO::Socket::INET ();
use JSON::PP ();
use List::Util qw(min);
use POSIX qw(EAGAIN EWOULDBLOCK);
use Test::LongString ();
use Time::HiRes qw(sleep time);

use Test::Nginx::Util;

our $VERSION = '0.33';

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location use_hup
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout no_nginx_manager check_accum_error_log
    add_block_preprocessor bail_out add_test_cleanup_handler
    add_cleanup_handler add_response_body_check
);

our @ResponseBodyChecks;

sub value_contains ($$);

$RunTestHelper         = \&run_test_helper;
$CheckErrorLog         = \&check_error_log;
$CheckShutdownErrorLog = \&check_shutdown_error_log;

sub set_http_config_filter ($) { $FilterHttpConfig = shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

sub tb () { return Test::More->builder }

# A failure outside the planned checks (transport or protocol error).  As
# upstream does, Test::Builder's end-of-run checks (plan count, exit status)
# are switched off; prove still reports the "not ok".
sub unplanned_fail ($) {
    my $msg = shift;
    tb()->no_ending(1);
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::fail($msg);
}

# ---------------------------------------------------------------------------
# Building requests
# ---------------------------------------------------------------------------

# "--- more_headers" lines become "Key: value\r\n"; "#" lines are comments.
sub parse_more_headers ($) {
    my $in = shift;
    my ($out, $is_chunked) = ('', 0);
    for my $header (split /\n+/, $in) {
        next if $header =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $header, 2;
        $val //= '';
        $is_chunked = 1
            if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $is_chunked);
}

# Turns "METHOD [URI [VERSION]]\nbody" (possibly split into packets) into a
# complete HTTP request: normalized request line, Host and Connection unless
# given, the extra headers, Content-Length for a body unless given or
# chunked (the body is then trimmed).  The original packet boundaries are
# kept at the corresponding places of the result.  Returns the packets.
sub build_request ($$$$$) {
    my ($name, $more_headers, $is_chunked, $conn, $packets) = @_;
    my $orig = join '', @$packets;

    $orig =~ /\A([^\n]*\n?)/;
    my $line = $1;
    bail_out("$name - Request line should be non-empty") if $line eq '';
    if ($line !~ /^(\s*)(\S+)( *)(?:(\S+)( *))?(?:(\S+)( *))?(\s*)$/) {
        bail_out("$name - Request line is not valid. Should be 'meth [url "
                 . "[version]]' but got \"$line\".");
    }
    my ($meth, $url, $ver) = ($2, $4, $6);
    my @pos = map { [$-[$_], $+[$_]] } 0 .. 8;
    my $line_len = length $line;
    my $content = substr $orig, $line_len;

    # Edits on $orig: [start, length, replacement], in increasing order.
    my @edits = ([0, $pos[1][1], '']);
    push @edits, [$pos[2][0], length $meth, "$meth "];
    push @edits, [$pos[3][0], $pos[3][1] - $pos[3][0], ''];
    my $at = $pos[3][1];
    if (defined $url) {
        push @edits, [$pos[4][0], length $url, "$url "];
        push @edits, [$pos[5][0], $pos[5][1] - $pos[5][0], ''];
        $at = $pos[5][1];
    } else {
        push @edits, [$at, 0, '/ '];
    }
    if (defined $ver) {
        push @edits, [$pos[6][0], length $ver, "$ver\r\n"];
        $at = $pos[6][1];
    } else {
        push @edits, [$at, 0, "HTTP/1.1\r\n"];
    }
    push @edits, [$at, $line_len - $at, ''];

    my $len_header = '';
    if (!$is_chunked && $content ne ''
        && $more_headers !~ /(?:^|\n)Content-Length:/)
    {
        $content =~ s/^\s+|\s+$//gs;
        $len_header = 'Content-Length: ' . length($content) . "\r\n";
    }
    $more_headers =~ s/(?<!\r)\n/\r\n/gs;
    my $headers = '';
    $headers .= "Host: $ServerName\r\n"
        if $more_headers !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn\r\n"
        if $more_headers !~ /(?:^|\n)Connection/msi;
    $headers .= "$more_headers$len_header\r\n";
    push @edits, [$line_len, 0, $headers];
    push @edits, [$line_len, length($orig) - $line_len, $content];

    # Apply the edits and map every packet boundary into the result.  A
    # boundary inside an edited region keeps its offset into the
    # replacement (clamped); insertions at a boundary join the packet
    # before it.
    my ($new, $copied) = ('', 0);
    my @bounds;
    my $off = 0;
    for my $p (@$packets[0 .. $#$packets - 1]) {
        $off += length $p;
        push @bounds, $off;
    }
    my @new_bounds = (undef) x @bounds;
    for my $e (@edits) {
        my ($start, $len, $repl) = @$e;
        for my $k (0 .. $#bounds) {
            next if defined $new_bounds[$k];
            my $b = $bounds[$k];
            if ($b < $start || ($b == $start && $len > 0)) {
                $new_bounds[$k] = length($new) + $b - $copied;
            } elsif ($b < $start + $len) {
                $new_bounds[$k] = length($new) + $start - $copied
                                  + min($b - $start, length $repl);
            }
        }
        $new .= substr($orig, $copied, $start - $copied) . $repl;
        $copied = $start + $len;
    }
    for my $k (0 .. $#bounds) {
        $new_bounds[$k] //= length($new) + $bounds[$k] - $copied;
    }
    $new .= substr $orig, $copied;

    my @out;
    my $prev = 0;
    for my $b (@new_bounds, length $new) {
        push @out, substr $new, $prev, $b - $prev;
        $prev = $b;
    }
    return \@out;
}

sub headers_for ($$$) {
    my ($more_headers, $i, $what) = @_;
    if (ref $more_headers eq 'ARRAY') {
        my $hdr = $more_headers->[$i];
        bail_out("--- more_headers lacks data for the $what") unless defined
            $hdr;
        return parse_more_headers($hdr);
    }
    return parse_more_headers($more_headers);
}

# The requests of a block: a list of requests, each a list of packets
# ({value => bytes, delay_before => seconds}).
sub get_req_from_block ($) {
    my $block = shift;
    my $name = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        my @bits = ref $raw eq 'ARRAY' ? @$raw : ($raw);
        return [[map { {value => $_} } @bits]];
    }

    my $request;
    if (defined $block->request_eval) {
        Test::More::diag("$name - request_eval DEPRECATED. Use request eval "
                         . "instead.");
        $request = eval $block->request_eval;
        warn $@ if $@;
    } else {
        $request = $block->request;
        if (defined $request && !ref $request) {
            1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
        }
    }
    my $more_headers = $block->more_headers || '';

    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            if ref $reqs ne 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $req = expand_env_in_text($reqs->[$i], $name,
                                         $Test::Nginx::Util::RandPorts);
            my ($hdr, $chunked) = headers_for($more_headers, $i,
                                              "$i pipelined request");
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            $all .= build_request($name, $hdr, $chunked, $conn, [$req])->[0];
        }
        return [[{value => $all}]];
    }

    if (!ref $request) {
        return [] unless defined $request;
        my ($hdr, $chunked) = headers_for($more_headers, 0, 'request');
        my $r = build_request($name, $hdr, $chunked, 'close', [$request]);
        return [[{value => $r->[0]}]];
    }

    bail_out("$name - invalid ---request : MUST be string or array of "
             . "requests") if ref $request ne 'ARRAY';

    my @list;
    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my ($hdr, $chunked) = headers_for($more_headers, $i, "${i}th request");
        if (!ref $one) {
            my $r = build_request($name, $hdr, $chunked, 'close', [$one]);
            push @list, [{value => $r->[0]}];
            next;
        }
        bail_out("$name - Invalid syntax. $one should be a string or an "
                 . "array of packets.") if ref $one ne 'ARRAY';
        my @values = map {
            !ref $_ ? $_
            : ref $_ eq 'HASH' ? $_->{value}
            : bail_out("$name - Invalid syntax. $_ should be a string or "
                       . "hash with value.")
        } @$one;
        my $built = build_request($name, $hdr, $chunked, 'close', \@values);
        push @list, [map {
            my $orig = $one->[$_];
            ref $orig ? {%$orig, value => $built->[$_]}
                      : {value => $built->[$_]}
        } 0 .. $#$built];
    }
    return \@list;
}

# ---------------------------------------------------------------------------
# HTTP client
# ---------------------------------------------------------------------------

sub connect_server ($$$) {
    my ($block, $addr, $timeout) = @_;
    my $name = $block->name;
    my $tries_allowed = $Test::Nginx::Util::ConnectFailures ? 20 : 50;

    for my $try (1 .. $tries_allowed + 1) {
        my $sock = IO::Socket::INET->new(PeerAddr => $addr,
                                         PeerPort => $ServerPortForClient,
                                         Proto => 'tcp',
                                         Timeout => $timeout);
        if ($sock) {
            $sock->blocking(0);
            return $sock;
        }
        last if $try > $tries_allowed;
        my $err = $!;
        my $wait = min(1, (sleep_time() + sleep_time() * $try) * $try / 2);
        if ($wait >= 0.6) {
            warn "$name - Can't connect to $addr:$ServerPortForClient: "
                 . "$err\n\tRetry connecting after $wait sec\n";
        }
        sleep $wait;
    }

    my $msg = "$name - Can't connect to $addr:$ServerPortForClient: $! "
              . "(aborted)\n";
    bail_out($msg) if ++$Test::Nginx::Util::ConnectFailures >= 3;
    unplanned_fail($msg);
    return undef;
}

# Sends one request (a list of packets) and reads until the server closes
# the connection.  The timeout bounds the wait for each I/O event, not the
# whole exchange, as upstream's; on expiry the socket is closed and, unless
# --- abort is given, a failure is reported.  Returns what was received.
sub send_request ($$$) {
    my ($req, $timeout, $block) = @_;
    my $name = $block->name;
    my @bits = @$req;
    my $head_req = (join '', map { $_->{value} } @bits) =~ /^\s*HEAD\s+/
                   ? 1 : 0;
    my $addr = $block->server_addr_for_client // $ServerAddr;
    my $middle_delay = $block->raw_request_middle_delay;

    my $sock = connect_server($block, $addr, $timeout) or return;

    my $resp = '';
    my $wbuf = (shift @bits)->{value};
    my $woff = 0;
    my $writing = 1;
    my $sel = IO::Select->new($sock);

    while (1) {
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef, undef,
                                         $timeout);
        if (!$r && !$w) {
            close $sock;
            if (defined $block->abort) {
                sleep 0.005;
            } else {
                unplanned_fail("ERROR: client socket timed out - $name\n");
            }
            last;
        }

        if ($r && @$r) {
            my $done;
            while (1) {
                my $n = sysread $sock, my $buf, 65536;
                if (!defined $n) {
                    last if $! == EAGAIN || $! == EWOULDBLOCK;
                    warn "WARNING: $name - HTTP response read failure: $!";
                    $done = 1;
                    last;
                }
                if ($n == 0) {
                    $done = 1;
                    last;
                }
                $resp .= $buf;
            }
            if ($done) {
                close $sock;
                last;
            }
        }

        next unless $writing && $w && @$w;
        my $failed;
        while (1) {
            my $rest = length($wbuf) - $woff;
            if ($rest > 0) {
                my $n = syswrite $sock, $wbuf, $rest, $woff;
                if (!defined $n) {
                    last if $! == EAGAIN || $! == EWOULDBLOCK;
                    warn "write failed: $!\n";
                    $resp = "write failed: $!" if $resp eq '';
                    $failed = 1;
                    last;
                }
                $woff += $n;
                next;
            }
            my $next = shift @bits;
            if (!defined $next) {
                $writing = 0;
                if (defined(my $how = $block->shutdown)) {
                    shutdown($sock, $how =~ /^\s*$/ ? 1 : $how);
                }
                last;
            }
            my $delay = $next->{delay_before} // $middle_delay;
            sleep $delay if $delay;
            ($wbuf, $woff) = ($next->{value}, 0);
        }
        if ($failed) {
            close $sock;
            last;
        }
    }

    return ($resp, $head_req);
}

# Splits a raw response into (HTTP::Response, raw header text, bytes left
# after this response).  Chunked bodies must be complete: a body cut short
# (for example by --- abort) is a failure, as with upstream.
sub parse_response ($$$) {
    my ($name, $raw, $head_req) = @_;
    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';
    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;
    my $left;

    if ($code && $code !~ /^\d+$/) {
        undef $code;
        $res->code(undef);
    }
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my @trailers = $res->header('Trailer');

    if (defined $enc && $enc eq 'chunked') {
        my $body = $res->content // '';
        my $decoded = '';
        pos($body) = 0;
        while (1) {
            if (!@trailers && $body =~ /\G0[ \t]*\r\n\r\n/gc) {
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }
            if (@trailers && $body =~ /\G0[ \t]*\r\n/gc) {
                for my $t (@trailers) {
                    if ($body !~ /\G\Q$t\E: [^\n]*\r\n/gc) {
                        unplanned_fail("$name - invalid trailer data "
                                       . "received (expected $t).");
                        return;
                    }
                }
                if ($body !~ /\G\r\n/gc) {
                    unplanned_fail("$name - invalid chunked data received "
                                   . "(expected CRLF).");
                    return;
                }
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }
            if ($body =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                my $start = pos $body;
                if (length($body) - $start < $size) {
                    unplanned_fail("$name - invalid chunked data received "
                                   . "(not enought octets for the data "
                                   . "section)");
                    return;
                }
                $decoded .= substr $body, $start, $size;
                pos($body) = $start + $size;
                if ($body !~ /\G\r\n/gc) {
                    unplanned_fail("$name - invalid chunked data received "
                                   . "(expected CRLF).");
                    return;
                }
                next;
            }
            if ($body =~ /\G(.+)/gcs) {
                unplanned_fail("$name - invalid chunked body received: $1");
            } else {
                unplanned_fail("$name - no last chunk found - $body");
            }
            return;
        }
        $res->content($decoded);

    } elsif (defined $len && $len ne '' && $len >= 0) {
        my $body = $res->content;
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($body) . "\n" unless $head_req;
        } elsif (length $body > $len) {
            $left = substr $body, $len;
            $res->content(substr $body, 0, $len);
        }
    }

    return ($res, $raw_headers, $left);
}

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

# Expected values are arrays (one element per request) when a block sends
# several requests.
sub get_indexed_value ($$$$) {
    my ($name, $value, $idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$idx] if ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    return ref $value eq 'ARRAY' ? $value->[0] : $value;
}

sub expand_server_port ($) {
    my $s = shift;
    $s =~ s/\$ServerPort\b/$ServerPort/g;
    $s =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
    return $s;
}

sub check_error_code ($$$$) {
    my ($block, $res, $idx, $need_array) = @_;
    my $name = $block->name;
    my $code = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $pat = get_indexed_value($name, $block->error_code_like, $idx,
                                    $need_array);
        Test::More::like($code, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($code, get_indexed_value($name, $block->error_code,
                                                $idx, $need_array),
                       "$name - status code ok");
    } else {
        Test::More::is($code, 200, "$name - status code ok");
    }
}

sub check_response_headers ($$$$$) {
    my ($block, $res, $raw_headers, $idx, $need_array) = @_;
    my $name = $block->name;
    $raw_headers //= '';

    if (defined $block->raw_response_headers_like) {
        my $pat = get_indexed_value($name, $block->raw_response_headers_like,
                                    $idx, $need_array);
        Test::More::like($raw_headers, qr/$pat/s,
                         "$name - raw resp headers like");
    }
    if (defined $block->raw_response_headers_unlike) {
        my $pat = get_indexed_value($name,
                                    $block->raw_response_headers_unlike,
                                    $idx, $need_array);
        Test::More::unlike($raw_headers, qr/$pat/s,
                           "$name - raw resp headers unlike");
    }

    if (defined $block->response_headers) {
        my $headers = parse_headers(get_indexed_value($name,
            $block->response_headers, $idx, $need_array));
        for my $key (sort keys %$headers) {
            my $val = $headers->{$key};
            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                    "$name - header $key not present in the raw headers");
                next;
            }
            my $got = $res ? $res->header($key) : undef;
            Test::More::is($got // '', expand_server_port($val),
                           "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        my $headers = parse_headers(get_indexed_value($name,
            $block->response_headers_like, $idx, $need_array));
        for my $key (sort keys %$headers) {
            my $val = $headers->{$key} // '';
            my $got = $res ? $res->header($key) : undef;
            Test::More::like($got // '', qr/^$val$/,
                             "$name - header $key like ok");
        }
    }
}

sub run_filter ($$$) {
    my ($name, $filter, $content) = @_;
    return $filter->($content) if ref $filter eq 'CODE';
    bail_out("$name - the --- response_body_filters section only supports "
             . "subroutine reference values and string values") if ref
        $filter;
    my %named = (
        md5_hex => \&Digest::MD5::md5_hex, sha1_hex => \&Digest::SHA::sha1_hex,
        uc => sub { uc shift }, lc => sub { lc shift },
        ucfirst => sub { ucfirst shift }, lcfirst => sub { lcfirst shift },
        length => sub { length shift },
    );
    my $f = $named{$filter} or bail_out("$name - unknown filter, \"$filter\","
        . " specified in the --- response_body_filters section");
    return $f->($content);
}

sub transform_response_body ($$$) {
    my ($block, $res, $idx) = @_;
    my $filters = $block->response_body_filters;
    return unless defined $res && defined $res->content && defined $filters;
    my $name = $block->name;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//gs;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    if (ref $filters->[0] eq 'ARRAY') {
        $filters = $filters->[$idx];
        bail_out("$name - the ---response_body_filters two-dimensional array "
                 . "unmatch the specified request($idx)") unless $filters;
    }
    my $content = $res->content;
    $content = run_filter($name, $_, $content) for @$filters;
    $res->content($content);
}

sub check_response_body ($$$$$) {
    my ($block, $res, $idx, $repeated_idx, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;

    if (defined(my $file = $block->write_resp_body_file)) {
        if ($res) {
            open my $out, '>', $file or bail_out("$name - failed to write to "
                                                 . "file '$file': $!");
            print $out $content // '';
            close $out;
        }
    }
    if (defined $content) {
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gms;
        $content =~ s/^Connection: TE, close\r\n//gms;
    }

    if (defined $block->response_body || defined $block->response_body_eval) {
        if (defined $block->response_body_json_sort) {
            my $js = JSON::PP->new->canonical(1);
            my $obj = eval { $js->loose(1)->decode($content) };
            $content = $js->encode($obj) . "\n" if !$@ && defined $obj;
        }
        my $expected;
        if ($block->response_body_eval) {
            Test::More::diag("$name - response_body_eval is DEPRECATED. Use "
                             . "response_body eval instead.");
            $expected = eval get_indexed_value($name,
                $block->response_body_eval, $idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, $block->response_body, $idx,
                                          $need_array);
        }
        if ($block->charset) {
            Encode::from_to($expected, 'UTF-8', $block->charset);
        }
        if (defined $expected && !ref $expected) {
            $expected = expand_env_in_text(expand_server_port($expected),
                $name, $Test::Nginx::Util::RandPorts);
        }
        my $desc = "$name - response_body - response is expected (repeated "
                   . "req $repeated_idx, req $idx)";
        if (ref $expected) {
            Test::More::like($content, $expected, "$name - response_body - "
                . "like (repeated req $repeated_idx, req $idx)");
        } elsif ($Test::Nginx::Util::NoLongString) {
            Test::More::is($content, $expected, $desc);
        } else {
            Test::LongString::is_string($content, $expected, $desc);
        }

    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $like = defined $block->response_body_like;
        my $type = $like ? 'like' : 'unlike';
        my $pat = get_indexed_value($name, $like ? $block->response_body_like
                                                 : $block->response_body_unlike,
                                    $idx, $need_array);
        $pat = expand_server_port($pat);
        my $summary = trim($content) // '';
        my $cmp = $like ? \&Test::More::like : \&Test::More::unlike;
        $cmp->($content, qr/$pat/s,
               "$name - response_body_$type - response is expected "
               . "($summary)");
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res ? $res->content : undef, $idx, $repeated_idx,
                 0);
    }
}

# "--- error_log" style values: lines of literal text, a qr//, or an array
# of either.  Returns a fresh list the caller may consume.
sub log_patterns ($) {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub line_matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : $line =~ /\Q$pat\E/;
}

sub value_contains ($$) {
    my ($val, $pat) = @_;
    return 0 unless defined $val;
    return scalar($val =~ /\Q$pat\E/) if !ref $val || ref $val eq 'Regexp';
    return scalar grep { value_contains($_, $pat) } @$val
        if ref $val eq 'ARRAY';
    return 0;
}

sub fmt_str ($) {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# One pass per pattern that matches some line, one failure per pattern that
# matches none.
sub check_log_present ($$$$) {
    my ($pats, $lines, $file, $suffix) = @_;
    my @pending = @{log_patterns($pats)};
    for my $line (@$lines) {
        for my $pat (@pending) {
            next unless defined $pat && line_matches($line, $pat);
            Test::More::pass("$suffix->[0] - pattern \"$pat\" matches a line "
                             . "in $file$suffix->[1]");
            undef $pat;
        }
    }
    for my $pat (grep { defined } @pending) {
        Test::More::fail("$suffix->[0] - pattern \"$pat\" should match a line "
                         . "in $file$suffix->[1]");
    }
}

# One failure per matching line (the extra ones disable the plan check), one
# pass per pattern that matches nothing.
sub check_log_absent ($$$$) {
    my ($pats, $lines, $file, $suffix) = @_;
    my @pats = @{log_patterns($pats)};
    my %found;
    for my $i (0 .. $#$lines) {
        my $line = $lines->[$i];
        for my $pat (@pats) {
            next unless defined $pat && line_matches($line, $pat);
            tb()->no_ending(1) if $found{$pat}++;
            my $more = join '', @$lines[$i + 1 .. min($i + 9, $#$lines - 1)];
            Test::More::fail("$suffix->[0] - pattern \"" . fmt_str($pat)
                . "\" should not match any line in $file but matches line \""
                . fmt_str($line) . "\"$suffix->[1]\n$more");
        }
    }
    for my $pat (grep { defined && !$found{$_} } @pats) {
        Test::More::pass("$suffix->[0] - pattern \"" . fmt_str($pat)
                         . "\" does not match a line in $file$suffix->[1]");
    }
}

sub check_error_log ($$$$$) {
    my ($block, $res, $dry_run, $repeated_idx, $need_array) = @_;
    my $name = $block->name;
    my $lines;
    my $suffix = [$name, " (req $repeated_idx)"];

    my $grep_pat = $block->grep_error_log;
    if (defined $grep_pat) {
        $grep_pat = $grep_pat->[$repeated_idx] if ref $grep_pat eq 'ARRAY';
    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- "
                 . "grep_error_log_out is defined");
    }
    if (defined $grep_pat) {
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- "
                 . "grep_error_log is defined") unless defined $expected;
        $expected = $expected->[$repeated_idx] if ref $expected eq 'ARRAY';
        $expected = expand_env_in_text($expected, $name,
                                       $Test::Nginx::Util::RandPorts)
            unless ref $expected;
        $lines ||= error_log_data();
        my $matched = '';
        my $re = ref $grep_pat ? $grep_pat : qr/\Q$grep_pat\E/;
        for my $line (@$lines) {
            if ($line =~ $re && $& !~ /\n/) {
                $matched .= "$&\n";
            }
        }
        my $desc = "$name - grep_error_log_out (req $repeated_idx)";
        if (ref $expected eq 'Regexp') {
            Test::More::like($matched, $expected, $desc);
        } elsif ($Test::Nginx::Util::NoLongString) {
            Test::More::is($matched, $expected, $desc);
        } else {
            Test::LongString::is_string($matched, $expected, $desc);
        }
    }

    my %warn_on = map { $_ => 1 } qw(alert crit emerg);
    for my $section (qw(error_log no_error_log)) {
        my $pats = $block->$section;
        next unless defined $pats;
        for my $level (keys %warn_on) {
            delete $warn_on{$level} if value_contains($pats, "[$level");
        }
        $lines ||= error_log_data();
        if ($section eq 'error_log') {
            check_log_present($pats, $lines, 'error.log', $suffix);
        } else {
            check_log_absent($pats, $lines, 'error.log', $suffix);
        }
    }

    if (%warn_on && !$dry_run) {
        $lines ||= error_log_data();
        for my $line (@$lines) {
            if ($line =~ /\[(alert|crit|emerg)\]/ && $warn_on{$1}) {
                warn "WARNING: $name - " . fmt_str($line) . "\n";
            }
        }
    }

    for my $line (@{$lines || []}) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            chomp(my $l = $line);
            unplanned_fail("$name - $l\n");
        }
    }
}

sub check_access_log ($$) {
    my ($block, $repeated_idx) = @_;
    my $suffix = [$block->name, " (req $repeated_idx)"];
    my $lines;
    if (defined $block->access_log) {
        $lines ||= access_log_data();
        check_log_present($block->access_log, $lines, 'access.log', $suffix);
    }
    if (defined $block->no_access_log) {
        $lines ||= access_log_data();
        check_log_absent($block->no_access_log, $lines, 'access.log',
                         $suffix);
    }
}

# Run for a block once its nginx has been stopped (at the start of the next
# block, or at exit).
sub check_shutdown_error_log ($$) {
    my ($block, $dry_run) = @_;
    my $name = $block->name;
    my $suffix = [$name, ''];
    my $lines;

    SKIP: {
        my $n = 0;
        for my $s (qw(shutdown_error_log no_shutdown_error_log)) {
            $n += @{log_patterns($block->$s)} if defined $block->$s;
        }
        Test::More::skip("$name - shutdown_error_log - tests skipped due to "
                         . "dry_run", $n) if $dry_run;

        if (defined $block->shutdown_error_log) {
            $lines ||= error_log_data();
            check_log_present($block->shutdown_error_log, $lines,
                              'error.log', $suffix);
        }
        if (defined $block->no_shutdown_error_log) {
            $lines ||= error_log_data();
            check_log_absent($block->no_shutdown_error_log, $lines,
                             'error.log', $suffix);
        }
    }
}

# ---------------------------------------------------------------------------
# One repetition of a block
# ---------------------------------------------------------------------------

sub run_test_helper ($$$) {
    my ($block, $dry_run, $repeated_idx) = @_;
    my $name = $block->name;

    my $reqs = get_req_from_block($block);
    bail_out("$name - request empty") unless @$reqs;

    my $timeout = parse_time($block->timeout) // timeout();
    my $ignore = defined $block->ignore_response;
    my $pipelined = $block->pipelined_requests;
    my $need_array = $pipelined ? 1 : @$reqs > 1;
    my $res;
    my $idx = 0;

    for my $r (0 .. $#$reqs) {
        my ($raw, $head_req) = send_request($reqs->[$r], $timeout, $block);
        my $responses = $pipelined ? scalar @$pipelined : 1;

        for my $k (1 .. $responses) {
            $raw //= '';
            my ($raw_headers, $left);
            if (!$ignore) {
                if (defined $block->http09) {
                    $res = HTTP::Response->new(200, 'OK', [], $raw);
                    $raw_headers = '';
                } else {
                    ($res, $raw_headers, $left) = parse_response($name, $raw,
                                                                 $head_req);
                }
            }
            if ($pipelined) {
                $raw = $left;
            } elsif (defined $left && $left ne '') {
                $left =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
                warn "WARNING: $name - unexpected extra bytes after last "
                     . "chunk in response: \"$left\"\n";
            }

            if (!$ignore) {
                check_error_code($block, $res, $idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $idx,
                                       $need_array);
                transform_response_body($block, $res, $idx);
                check_response_body($block, $res, $idx, $repeated_idx,
                                    $need_array);
            }

            # Between the requests of one block the logs are checked too,
            # each time against what was logged since the last check.
            if ($k < $responses || $r < $#$reqs) {
                sleep $block->wait if $block->wait;
                check_error_log($block, $res, $dry_run, $repeated_idx,
                                $need_array);
                check_access_log($block, $repeated_idx) unless $ignore;
            }
            $idx++;
        }
    }

    sleep $block->wait if $block->wait;
    check_error_log($block, $res, $dry_run, $repeated_idx, $need_array);
    check_access_log($block, $repeated_idx) unless $ignore;
}

1;

__END__

=head1 NAME

Test::Nginx::Socket - the project's fallback for openresty's Test::Nginx

=head1 SYNOPSIS

    use Test::Nginx::Socket;            # prove -I t/lib when not installed

    repeat_each(2);
    plan tests => repeat_each() * 2 * blocks();
    run_tests();

    __DATA__

    === TEST 1: hello
    --- config
    location = /t { return 200 "hello\n"; }
    --- request
    GET /t
    --- response_body
    hello

=head1 DESCRIPTION

A subset of upstream Test::Nginx::Socket 0.33 with the same semantics, test
counts, test names, generated nginx.conf (line for line) and exports.  Use
it through C<prove -I t/lib> only when C<perl -MTest::Nginx::Socket -e1>
fails.  Self-tests: C<prove -I t/lib -r t/selftest>.

=head2 Functions

plan, blocks, is, like, ok, is_deeply, ... (Test::Base), run_tests,
repeat_each, no_shuffle, no_long_string, log_level, master_on, master_off,
master_process_enabled, workers, worker_connections, add_block_preprocessor,
add_cleanup_handler, add_test_cleanup_handler, add_response_body_check,
no_root_location, env_to_nginx, config_preamble, server_name, server_addr,
server_port, server_port_for_client, html_dir, server_root, timeout,
check_accum_error_log, no_nginx_manager, bail_out, is_str; use_hup is a
no-op.  As upstream, C<$ServerPort> and friends are not exported (use
server_port() or C<$ENV{TEST_NGINX_SERVER_PORT}>).

=head2 Sections

main_config, post_main_config, http_config, config, server_name,
error_log_file, user_files, init, post_setup_server_root; request (string,
eval array of requests, arrays of packets with delay_before), request_eval,
pipelined_requests, raw_request (+ raw_request_middle_delay), more_headers
(string or array), shutdown, timeout, abort, wait, server_addr_for_client,
ignore_response, http09; error_code, error_code_like, response_headers
(C<!Name> for absence), response_headers_like, raw_response_headers_like,
raw_response_headers_unlike, response_body, response_body_eval,
response_body_like, response_body_unlike, response_body_filters,
response_body_json_sort, charset, write_resp_body_file; error_log,
no_error_log, grep_error_log, grep_error_log_out, access_log,
no_access_log, shutdown_error_log, no_shutdown_error_log, log_level;
must_die, suppress_stderr; skip_nginx, skip_nginx2, skip_eval, todo;
ONLY, SKIP, LAST (Test::Base).  A block using http2, http3, curl, stap*,
tcp_*, udp_*, skip_openssl, skip_slave, todo_nginx or reload_fails bails
out.

=head2 Environment

TEST_NGINX_BINARY, TEST_NGINX_PORT, TEST_NGINX_SERVER_PORT,
TEST_NGINX_CLIENT_PORT, TEST_NGINX_SERVROOT, TEST_NGINX_LOAD_MODULES,
TEST_NGINX_NO_SHUFFLE, TEST_NGINX_TIMEOUT, TEST_NGINX_SLEEP,
TEST_NGINX_LOG_LEVEL, TEST_NGINX_MASTER_PROCESS, TEST_NGINX_EVENT_TYPE,
TEST_NGINX_WORKER_USER, TEST_NGINX_CHECK_ACCUM_ERR_LOG,
TEST_NGINX_NO_NGINX_MANAGER, TEST_NGINX_FAST_SHUTDOWN, TEST_NGINX_NO_CLEAN,
TEST_NGINX_VERBOSE.  C<$TEST_NGINX_*> in config sections, user_files,
pipelined_requests, expected bodies and grep_error_log_out is replaced from
%ENV (TEST_NGINX_RAND_PORT_N: a free port).

=head2 Things to know (all as upstream)

The client timeout bounds each wait for I/O, not the whole exchange.  A
chunked (HTTP/1.1) body cut short by C<--- abort> fails with "no last chunk
found": to check the part of a stream received before a timeout, send an
HTTP/1.0 request.  Each error log check sees only what was logged since the
previous one: per repetition, and after each request of a multi-request
block.  A block without C<--- config> reuses the previous block's nginx.

=cut
