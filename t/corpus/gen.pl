#!/usr/bin/perl

# Generates t/corpus/bad-requests.txt, the bad-input corpus that
# t/090-bad-input.t runs through the gateway. Deterministic: the same
# script writes the same file, byte for byte.
#
#     perl t/corpus/gen.pl > t/corpus/bad-requests.txt
#
# One case per line, five TAB-separated fields:
#
#     id  path  expect  headers  body
#
# path     the request path (the client API follows from it)
# expect   "400 param=model", "400 code=invalid_json", "413", "415": the
#          gateway must answer this status in the API's error shape, with
#          that param / code; "fwd": valid enough to forward, the mock must
#          answer 200 with the body it received (x-mock-echo); "stream": a
#          streaming request the mock must answer with a complete SSE stream
# headers  "-" for "Content-Type: application/json", else header lines in
#          the escaped form below, separated by \n; "Transfer-Encoding:
#          chunked" makes the runner send the body chunked
# body     the escaped body
#
# Escapes (so that the file is plain ASCII text, one case per line):
# \\ a backslash, \t \n \r, \xHH any byte, \R{N:text} text (escaped the
# same way, with } written \x7d) repeated N times.

use strict;
use warnings;

my @cases;
my %seen;

my %paths = (
    chat        => '/v1/chat/completions',
    completions => '/v1/completions',
    embeddings  => '/v1/embeddings',
    messages    => '/v1/messages',
);

# a body is a list of parts: raw byte strings, or [N, raw] repeated N times

sub esc {
    my ($raw, $in_repeat) = @_;
    my $out = '';

    for my $c (split //, $raw) {
        my $o = ord $c;

        if ($c eq '\\') {
            $out .= '\\\\';
        } elsif ($c eq "\t") {
            $out .= '\\t';
        } elsif ($c eq "\n") {
            $out .= '\\n';
        } elsif ($c eq "\r") {
            $out .= '\\r';
        } elsif ($o < 0x20 || $o >= 0x7f || ($in_repeat && $c eq '}')) {
            $out .= sprintf '\\x%02X', $o;
        } else {
            $out .= $c;
        }
    }

    return $out;
}

sub encode_body {
    my $out = '';

    for my $part (@_) {
        if (ref $part) {
            my ($n, $raw) = @$part;
            $out .= "\\R{$n:" . esc($raw, 1) . '}';
        } else {
            $out .= esc($part);
        }
    }

    return $out;
}

sub add {
    my ($id, $api, $expect, $headers, @body) = @_;

    die "duplicate case id $id\n" if $seen{$id}++;
    die "bad id $id\n" unless $id =~ /^[a-z0-9][a-z0-9_-]*$/;
    die "unknown api $api\n" unless $paths{$api};

    my $h = defined $headers ? esc($headers) : '-';

    push @cases, join "\t", $id, $paths{$api}, $expect, $h,
                            encode_body(@body);
}

# valid bodies to start from, with a slot for the hostile part

sub chat_with {
    my ($extra) = @_;
    return '{"model":"m","messages":[{"role":"user","content":"hi"}]'
           . $extra . '}';
}

sub msg_with {
    my ($extra) = @_;
    return '{"model":"m","max_tokens":16,'
           . '"messages":[{"role":"user","content":"hi"}]' . $extra . '}';
}

sub chat_content {
    return ('{"model":"m","messages":[{"role":"user","content":"', @_,
            '"}]}');
}

sub msg_content {
    return ('{"model":"m","max_tokens":16,"messages":[{"role":"user",'
            . '"content":"', @_, '"}]}');
}

my %valid = (
    chat        => chat_with(''),
    completions => '{"model":"m","prompt":"hi"}',
    embeddings  => '{"model":"m","input":"hi"}',
    messages    => msg_with(''),
);

my @apis = qw(chat completions embeddings messages);
my $bad_json = '400 code=invalid_json';


# -- 1. invalid JSON, every API ----------------------------------------------

my @invalid_json = (
    ['empty',            ''],
    ['whitespace',       "  \n\t "],
    ['open-brace',       '{'],
    ['close-brace',      '}'],
    ['unterminated',     '{"model":"m"'],
    ['no-value',         '{"model":}'],
    ['no-colon',         '{"model" "m"}'],
    ['unquoted-key',     '{model:"m"}'],
    ['single-quotes',    "{'model':'m'}"],
    ['trailing-comma',   '{"model":"m",}'],
    ['array-trailing-comma', '{"model":"m","stop":["a",]}'],
    ['leading-comma',    '{,"model":"m"}'],
    ['double-comma',     '{"model":"m",,"n":1}'],
    ['trailing-garbage', $valid{chat} . 'x'],
    ['two-objects',      '{"model":"m"}{"model":"m"}'],
    ['unterminated-string', '{"model":"m}'],
    ['bad-escape',       '{"model":"m\\x"}'],
    ['short-unicode-escape', '{"model":"m\\u12"}'],
    ['bad-unicode-escape', '{"model":"m\\u12G4"}'],
    ['nan',              '{"model":"m","temperature":NaN}'],
    ['infinity',         '{"model":"m","temperature":Infinity}'],
    ['neg-infinity',     '{"model":"m","temperature":-Infinity}'],
    ['leading-zero',     '{"model":"m","n":01}'],
    ['plus-sign',        '{"model":"m","n":+1}'],
    ['bare-fraction',    '{"model":"m","top_p":.5}'],
    ['dangling-point',   '{"model":"m","top_p":1.}'],
    ['dangling-exponent', '{"model":"m","top_p":1e}'],
    ['hex-number',       '{"model":"m","n":0x10}'],
    ['minus-only',       '{"model":"m","n":-}'],
    ['comment',          '{"model":"m" /* hi */}'],
    ['line-comment',     "{\"model\":\"m\" // hi\n}"],
    ['bad-literal',      '{"model":"m","stream":tru}'],
    ['caps-literal',     '{"model":"m","stream":True}'],
    ['none-literal',     '{"model":"m","stream":None}'],
    ['raw-newline-in-string', "{\"model\":\"m\nx\"}"],
    ['raw-tab-in-string', "{\"model\":\"m\tx\"}"],
    ['utf8-bom',         "\xEF\xBB\xBF" . $valid{chat}],
    ['utf16-body',       "{\0\"\0m\0\"\0:\0\"\0m\0\"\0}\0"],
    ['unclosed-array',   '{"model":"m","messages":[{"role":"user"}'],
    ['mismatched-close', '{"model":"m","messages":[}]}'],
    ['key-not-string',   '{1:"m"}'],
    ['colon-in-array',   '{"model":"m","stop":["a":"b"]}'],
    ['backslash-at-end', '{"model":"m\\'],
    ['form-encoded',     'model=m&messages=hi'],
);

for my $c (@invalid_json) {
    my ($name, $body) = @$c;

    for my $api (qw(chat messages)) {
        add("json-$name-$api", $api, $bad_json, undef, $body);
    }
}

for my $api (qw(completions embeddings)) {
    add("json-trailing-garbage-$api", $api, $bad_json, undef,
        $valid{$api} . ']');
    add("json-unterminated-$api", $api, $bad_json, undef,
        substr($valid{$api}, 0, -2));
}


# -- 2. bodies that are valid JSON but not an object -------------------------

for my $c (['array', '[]'], ['string', '"hi"'], ['number', '42'],
           ['null', 'null'], ['true', 'true'],
           ['array-of-request', "[$valid{chat}]"])
{
    for my $api (qw(chat messages)) {
        add("not-object-$c->[0]-$api", $api, '400', undef, $c->[1]);
    }
}


# -- 3. wrong types for every known field ------------------------------------

my %wrong = (
    model        => ['42', 'null', 'true', '["m"]', '{"name":"m"}', '""'],
    messages     => ['"hi"', '{"role":"user"}', '42', 'null', '[]', '[1]',
                     '["hi"]', '[null]', '[[]]'],
    stream       => ['"yes"', '1', '0', '[]', '{}', '"true"'],
    stream_options => ['"x"', '1', 'true', '[]'],
    max_tokens   => ['"16"', '-1', '1.5', 'true', '[]', '{}', '1e100',
                     '99999999999999999999999', '-0.5', '1e-5'],
    max_completion_tokens => ['"16"', '-1', '2.5', 'false'],
    n            => ['0', '-1', '"2"', '1.5', 'true', '[1]'],
    temperature  => ['"hot"', 'true', '[]', '{}', '"0.5"'],
    top_p        => ['"x"', '[]', 'false', '{"p":1}'],
    seed         => ['"1"', '1.5', 'true', '[]', '1e30'],
    tools        => ['"x"', '{}', '1', 'true'],
);

for my $field (sort keys %wrong) {
    my $i = 0;

    for my $v (@{ $wrong{$field} }) {
        $i++;

        my ($chat, $msg);

        if ($field eq 'model' || $field eq 'messages') {
            ($chat = $valid{chat}) =~ s/"$field":("m"|\[.*\])/"$field":$v/;
            ($msg = $valid{messages})
                =~ s/"$field":("m"|\[.*\])/"$field":$v/;
        } else {
            $chat = chat_with(",\"$field\":$v");
            $msg = msg_with(",\"$field\":$v");
        }

        my $param = $field eq 'max_completion_tokens'
                    ? 'max_completion_tokens' : $field;

        add("type-$field-$i-chat", 'chat', "400 param=$param", undef, $chat);

        # Anthropic has no max_completion_tokens / n / seed / stream_options;
        # the gateway still checks the ones it reads
        next if $field =~ /^(?:max_completion_tokens|n|seed)$/;
        add("type-$field-$i-messages", 'messages', "400 param=$param",
            undef, $msg);
    }
}

for my $v ('"yes"', '1', '[]') {
    my $n = ($v =~ /^"/) ? 'string' : ($v eq '1') ? 'number' : 'array';

    add("type-include-usage-$n-chat", 'chat', '400 param=stream_options',
        undef, chat_with(",\"stream\":true,\"stream_options\":"
                         . "{\"include_usage\":$v}"));
}

for my $v (['number', '1'], ['bool', 'true'], ['object', '{}']) {
    add("type-system-$v->[0]-messages", 'messages', '400 param=system',
        undef, msg_with(",\"system\":$v->[1]"));
    add("type-prompt-$v->[0]-completions", 'completions',
        '400 param=prompt', undef, "{\"model\":\"m\",\"prompt\":$v->[1]}");
    add("type-input-$v->[0]-embeddings", 'embeddings', '400 param=input',
        undef, "{\"model\":\"m\",\"input\":$v->[1]}");
}

add('type-prompt-null-completions', 'completions', '400 param=prompt',
    undef, '{"model":"m","prompt":null}');
add('type-input-null-embeddings', 'embeddings', '400 param=input',
    undef, '{"model":"m","input":null}');


# -- 4. missing required fields ------------------------------------------------

add('missing-model-chat', 'chat', '400 param=model', undef,
    '{"messages":[{"role":"user","content":"hi"}]}');
add('missing-model-messages', 'messages', '400 param=model', undef,
    '{"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}');
add('missing-model-completions', 'completions', '400 param=model', undef,
    '{"prompt":"hi"}');
add('missing-model-embeddings', 'embeddings', '400 param=model', undef,
    '{"input":"hi"}');
add('missing-messages-chat', 'chat', '400 param=messages', undef,
    '{"model":"m"}');
add('missing-messages-messages', 'messages', '400 param=messages', undef,
    '{"model":"m","max_tokens":16}');
add('missing-max-tokens-messages', 'messages', '400 param=max_tokens',
    undef, '{"model":"m","messages":[{"role":"user","content":"hi"}]}');
add('missing-prompt-completions', 'completions', '400 param=prompt', undef,
    '{"model":"m"}');
add('missing-input-embeddings', 'embeddings', '400 param=input', undef,
    '{"model":"m"}');
add('empty-object-chat', 'chat', '400 param=model', undef, '{}');
add('empty-object-messages', 'messages', '400 param=model', undef, '{}');
add('model-case-variant-chat', 'chat', '400 param=model', undef,
    '{"Model":"m","messages":[{"role":"user","content":"hi"}]}');


# -- 5. nesting ------------------------------------------------------------------

# llm_max_json_depth 64 (the default): the top-level object is depth 1,
# messages 2, a message 3, its content 4
for my $api (qw(chat messages)) {
    my @head = $api eq 'chat'
        ? ('{"model":"m","messages":[{"role":"user","content":')
        : ('{"model":"m","max_tokens":16,"messages":[{"role":"user",'
           . '"content":');

    add("deep-array-65-$api", $api, '400', undef,
        @head, [62, '['], [62, ']'], '}]}');
    add("deep-object-65-$api", $api, '400', undef,
        @head, [62, '{"a":'], '1', [62, '}'], '}]}');
    add("deep-array-100k-$api", $api, '400', undef,
        @head, [100000, '['], [100000, ']'], '}]}');
    add("deep-unclosed-100k-$api", $api, '400', undef,
        @head, [100000, '[']);
    add("deep-mixed-10k-$api", $api, '400', undef,
        @head, [10000, '[{"a":'], '1', [10000, '}]'], '}]}');

    # exactly at the limit: forwarded
    add("deep-array-64-$api", $api, 'fwd', undef,
        @head, [61, '['], [61, ']'], '}]}');
}

add('deep-top-level-array', 'chat', '400', undef,
    [100000, '['], [100000, ']']);
add('deep-metadata-65', 'chat', '400', undef,
    '{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":',
    [64, '{"a":'], '1', [64, '}'], '}');


# -- 6. huge strings and numbers -----------------------------------------------

add('huge-model-60k-chat', 'chat', 'fwd', undef,
    '{"model":"', [60000, 'm'], '","messages":[{"role":"user",'
    . '"content":"hi"}]}');
add('huge-content-200k-chat', 'chat', 'fwd', undef,
    chat_content([200000, 'a']));
add('huge-content-200k-messages', 'messages', 'fwd', undef,
    msg_content([200000, 'a']));
add('huge-escapes-40k-chat', 'chat', 'fwd', undef,
    chat_content([40000, '\\u00e9']));
add('huge-key-60k-chat', 'chat', 'fwd', undef,
    '{"', [60000, 'k'], '":1,"model":"m","messages":[{"role":"user",'
    . '"content":"hi"}]}');
add('huge-unterminated-string-chat', 'chat', $bad_json, undef,
    '{"model":"m","messages":[{"role":"user","content":"', [200000, 'a']);
add('huge-message-count-chat', 'chat', 'fwd', undef,
    '{"model":"m","messages":[',
    [5000, '{"role":"user","content":"hi"},'],
    '{"role":"user","content":"hi"}]}');
add('huge-array-of-numbers-completions', 'completions', 'fwd', undef,
    '{"model":"m","prompt":[', [30000, '1,'], '1]}');

for my $api (qw(chat messages)) {
    my $with = $api eq 'chat' ? \&chat_with : \&msg_with;

    add("huge-max-tokens-digits-$api", $api, '400 param=max_tokens', undef,
        $with->(',"max_tokens":' . ('9' x 5000)));
    add("huge-max-tokens-exponent-$api", $api, '400 param=max_tokens', undef,
        $with->(',"max_tokens":1e999999999'));
    add("huge-max-tokens-2pow63-$api", $api, '400 param=max_tokens', undef,
        $with->(',"max_tokens":9223372036854775808'));
    add("huge-temperature-exponent-$api", $api, 'fwd', undef,
        $with->(',"temperature":1e400'));
    add("huge-temperature-digits-$api", $api, 'fwd', undef,
        $with->(',"temperature":0.' . ('1' x 5000)));
    add("huge-number-in-metadata-$api", $api, 'fwd', undef,
        $with->(',"metadata":{"x":' . ('7' x 20000) . '}'));
    add("huge-exponent-digits-$api", $api, 'fwd', undef,
        $with->(',"metadata":{"x":1e' . ('9' x 1000) . '}'));
}

add('huge-seed-chat', 'chat', '400 param=seed', undef,
    chat_with(',"seed":18446744073709551616'));
add('huge-n-chat', 'chat', '400 param=n', undef,
    chat_with(',"n":1e400'));


# -- 7. invalid UTF-8 ------------------------------------------------------------

my @bad_utf8 = (
    ['overlong-2', "\xC0\xAF"],
    ['overlong-2-nul', "\xC0\x80"],
    ['overlong-3', "\xE0\x80\xAF"],
    ['overlong-4', "\xF0\x80\x80\xAF"],
    ['surrogate-high', "\xED\xA0\x80"],
    ['surrogate-low', "\xED\xBF\xBF"],
    ['surrogate-pair', "\xED\xA0\xBD\xED\xB8\x80"],
    ['above-max', "\xF4\x90\x80\x80"],
    ['f5-lead', "\xF5\x80\x80\x80"],
    ['fe-byte', "\xFE"],
    ['ff-byte', "\xFF"],
    ['lone-continuation', "\x80"],
    ['two-continuations', "\xBF\xBF"],
    ['truncated-2', "\xC3"],
    ['truncated-3', "\xE2\x82"],
    ['truncated-4', "\xF0\x9F\x98"],
    ['latin1', "caf\xE9"],
    ['five-byte', "\xF8\x88\x80\x80\x80"],
);

for my $c (@bad_utf8) {
    my ($name, $bytes) = @$c;

    add("utf8-$name-content-chat", 'chat', $bad_json, undef,
        chat_content("a${bytes}b"));
    add("utf8-$name-content-messages", 'messages', $bad_json, undef,
        msg_content("a${bytes}b"));
}

for my $c (@bad_utf8[0, 4, 9, 13]) {
    my ($name, $bytes) = @$c;

    add("utf8-$name-model-chat", 'chat', $bad_json, undef,
        "{\"model\":\"m$bytes\",\"messages\":[{\"role\":\"user\","
        . "\"content\":\"hi\"}]}");
    add("utf8-$name-key-messages", 'messages', $bad_json, undef,
        msg_with(",\"k$bytes\":1"));
}

add('utf8-truncated-at-end-chat', 'chat', $bad_json, undef,
    '{"model":"m","messages":[{"role":"user","content":"\xE2\x82');
add('utf8-outside-string-chat', 'chat', $bad_json, undef,
    "{\"model\":\"m\",\xC3\xA9\"messages\":[]}");

# escapes that decode to odd code points are valid JSON (RFC 8259): forward
add('utf8-escaped-lone-high-surrogate-chat', 'chat', 'fwd', undef,
    chat_content('\\ud800'));
add('utf8-escaped-lone-low-surrogate-messages', 'messages', 'fwd', undef,
    msg_content('\\udc00x'));
add('utf8-escaped-reversed-pair-chat', 'chat', 'fwd', undef,
    chat_content('\\udc00\\ud800'));
add('utf8-valid-4-byte-chat', 'chat', 'fwd', undef,
    chat_content("\xF0\x9F\x98\x80 \xE2\x82\xAC \xC3\xA9"));
add('utf8-noncharacter-messages', 'messages', 'fwd', undef,
    msg_content("\xEF\xBF\xBF\xEF\xBF\xBE"));


# -- 8. NUL bytes ---------------------------------------------------------------

for my $api (qw(chat messages)) {
    my $content = $api eq 'chat' ? \&chat_content : \&msg_content;

    add("nul-in-content-$api", $api, $bad_json, undef,
        $content->("a\0b"));
    add("nul-before-body-$api", $api, $bad_json, undef,
        "\0" . $valid{$api});
    add("nul-after-body-$api", $api, $bad_json, undef,
        $valid{$api} . "\0");
    add("nul-between-tokens-$api", $api, $bad_json, undef,
        '{"model":"m",' . "\0" . substr($valid{$api}, 13));
    add("nul-in-key-$api", $api, $bad_json, undef,
        "{\"mo\0del\":\"m\"}");
    add("nul-only-$api", $api, $bad_json, undef, "\0\0\0\0");
    add("nul-escaped-in-content-$api", $api, 'fwd', undef,
        $content->('a\\u0000b'));
}

add('nul-in-model-chat', 'chat', $bad_json, undef,
    "{\"model\":\"m\0x\",\"messages\":[{\"role\":\"user\","
    . "\"content\":\"hi\"}]}");


# -- 9. duplicate keys ------------------------------------------------------------

for my $api (qw(chat messages)) {
    my $base = $valid{$api};
    my $with = $api eq 'chat' ? \&chat_with : \&msg_with;

    add("dup-model-$api", $api, '400', undef,
        $with->(',"model":"other"'));
    add("dup-messages-$api", $api, '400', undef,
        $with->(',"messages":[{"role":"user","content":"x"}]'));
    add("dup-stream-$api", $api, '400', undef,
        $with->(',"stream":false,"stream":true'));
    add("dup-max-tokens-$api", $api, '400', undef,
        $with->(',"max_tokens":1,"max_tokens":100000'));
    add("dup-unknown-key-$api", $api, '400', undef,
        $with->(',"x":1,"x":2'));
    add("dup-escaped-model-$api", $api, '400', undef,
        $with->(',"mod\\u0065l":"other"'));
    add("dup-escaped-stream-$api", $api, '400', undef,
        $with->(',"stream":false,"\\u0073tream":true'));

    # nested duplicates are not the gateway's to judge: forwarded
    add("dup-nested-role-$api", $api, 'fwd', undef,
        $api eq 'chat'
        ? '{"model":"m","messages":[{"role":"user","role":"system",'
          . '"content":"hi"}]}'
        : '{"model":"m","max_tokens":16,"messages":[{"role":"user",'
          . '"role":"assistant","content":"hi"}]}');
}


# -- 10. oversized bodies (the suite sets llm_max_body_size 256k) ---------------

for my $api (@apis) {
    my $open = substr $valid{$api}, 0, -1;

    add("oversized-256k-plus-1-$api", $api, '413 code=request_too_large',
        undef, $open, ',"x":"', [262144 + 1 - length($open) - 8, 'a'],
        '"}');
}

add('oversized-1m-chat', 'chat', '413 code=request_too_large', undef,
    chat_content([1048576, 'a']));
add('oversized-chunked-chat', 'chat', '413 code=request_too_large',
    "Content-Type: application/json\nTransfer-Encoding: chunked",
    chat_content([300000, 'a']));
add('oversized-chunked-messages', 'messages', '413 code=request_too_large',
    "Content-Type: application/json\nTransfer-Encoding: chunked",
    msg_content([300000, 'a']));
add('oversized-invalid-json-chat', 'chat', '413 code=request_too_large',
    undef, [270000, '{']);
add('chunked-invalid-json-chat', 'chat', $bad_json,
    "Content-Type: application/json\nTransfer-Encoding: chunked",
    '{"model":');
add('chunked-valid-messages', 'messages', 'fwd',
    "Content-Type: application/json\nTransfer-Encoding: chunked",
    $valid{messages});
add('spooled-to-file-invalid-json-chat', 'chat', $bad_json, undef,
    chat_content([100000, 'a'], "\x01"));


# -- 11. control characters and CRLF in model names -------------------------------

my @ctl_raw = (['crlf', "\r\n"], ['lf', "\n"], ['cr', "\r"], ['tab', "\t"],
               ['soh', "\x01"], ['esc', "\x1B[31m"], ['us', "\x1F"]);

for my $c (@ctl_raw) {
    add("model-raw-$c->[0]-chat", 'chat', $bad_json, undef,
        "{\"model\":\"gpt$c->[1]x\",\"messages\":[{\"role\":\"user\","
        . "\"content\":\"hi\"}]}");
    add("model-raw-$c->[0]-messages", 'messages', $bad_json, undef,
        "{\"model\":\"claude$c->[1]x\",\"max_tokens\":16,\"messages\":"
        . "[{\"role\":\"user\",\"content\":\"hi\"}]}");
}

# escaped control characters are valid JSON but never part of a model
# name; they would inject lines into logs, headers or routing keys
my @ctl_esc = (['crlf-header', '\\r\\nX-Injected: 1'], ['lf', '\\n'],
               ['cr', '\\r'], ['tab', '\\t'], ['nul', '\\u0000'],
               ['esc', '\\u001b[31m'], ['del', '\\u007f'],
               ['backspace', '\\b'], ['formfeed', '\\f'],
               ['crlf-unicode', '\\u000d\\u000a']);

for my $c (@ctl_esc) {
    add("model-escaped-$c->[0]-chat", 'chat', '400 param=model', undef,
        "{\"model\":\"gpt$c->[1]x\",\"messages\":[{\"role\":\"user\","
        . "\"content\":\"hi\"}]}");
    add("model-escaped-$c->[0]-messages", 'messages', '400 param=model',
        undef,
        "{\"model\":\"claude$c->[1]x\",\"max_tokens\":16,\"messages\":"
        . "[{\"role\":\"user\",\"content\":\"hi\"}]}");
}

add('model-raw-del-chat', 'chat', '400 param=model', undef,
    "{\"model\":\"gpt\x7Fx\",\"messages\":[{\"role\":\"user\","
    . "\"content\":\"hi\"}]}");
add('model-escaped-crlf-completions', 'completions', '400 param=model',
    undef, '{"model":"m\\r\\nX: 1","prompt":"hi"}');
add('model-escaped-crlf-embeddings', 'embeddings', '400 param=model',
    undef, '{"model":"m\\r\\nX: 1","input":"hi"}');

# odd but harmless model names are the upstream's to judge
add('model-escaped-quote-chat', 'chat', 'fwd', undef,
    '{"model":"a\\"b\\\\c","messages":[{"role":"user","content":"hi"}]}');
add('model-path-traversal-chat', 'chat', 'fwd', undef,
    '{"model":"../../etc/passwd","messages":[{"role":"user",'
    . '"content":"hi"}]}');
add('model-unicode-line-separator-messages', 'messages', 'fwd', undef,
    '{"model":"c\\u2028x","max_tokens":16,"messages":[{"role":"user",'
    . '"content":"hi"}]}');
add('model-space-only-chat', 'chat', 'fwd', undef,
    '{"model":" ","messages":[{"role":"user","content":"hi"}]}');


# -- 12. SSE-looking text inside content: valid, forwarded untouched ------------

my @sse_text = (
    ['done', 'data: [DONE]\\n\\n'],
    ['usage', 'data: {\\"usage\\":{\\"prompt_tokens\\":999999}}\\n\\n'],
    ['message-stop', 'event: message_stop\\ndata: {\\"type\\":'
                     . '\\"message_stop\\"}\\n\\n'],
    ['error-event', 'event: error\\ndata: {\\"type\\":\\"error\\"}\\n\\n'],
    ['crlf-frames', 'data: x\\r\\n\\r\\ndata: [DONE]\\r\\n\\r\\n'],
    ['comment-frame', ': keepalive\\n\\nretry: 1\\nid: 7\\n\\n'],
);

for my $c (@sse_text) {
    add("sse-text-$c->[0]-chat", 'chat', 'fwd', undef,
        chat_content($c->[1]));
    add("sse-text-$c->[0]-messages", 'messages', 'fwd', undef,
        msg_content($c->[1]));
}

# the same texts in real streams: the answer is a complete SSE stream
add('sse-text-done-stream-chat', 'chat', 'stream', undef,
    '{"model":"m","stream":true,"messages":[{"role":"user","content":'
    . '"data: [DONE]\\n\\n"}]}');
add('sse-text-usage-stream-chat', 'chat', 'stream', undef,
    '{"model":"m","stream":true,"stream_options":{"include_usage":true},'
    . '"messages":[{"role":"user","content":"data: {\\"usage\\":{}}\\n\\n'
    . '"}]}');
add('sse-text-stop-stream-messages', 'messages', 'stream', undef,
    '{"model":"m","max_tokens":16,"stream":true,"messages":[{"role":'
    . '"user","content":"event: message_stop\\ndata: {}\\n\\n"}]}');
add('sse-text-system-stream-messages', 'messages', 'stream', undef,
    '{"model":"m","max_tokens":16,"stream":true,"system":"data: [DONE]'
    . '\\n\\n","messages":[{"role":"user","content":"hi"}]}');


# -- 13. Content-Type ----------------------------------------------------------------

for my $api (qw(chat messages)) {
    add("ctype-missing-$api", $api, '415', '', $valid{$api});
    add("ctype-text-plain-$api", $api, '415', 'Content-Type: text/plain',
        $valid{$api});
    add("ctype-form-$api", $api, '415',
        'Content-Type: application/x-www-form-urlencoded', $valid{$api});
    add("ctype-jsonx-$api", $api, '415', 'Content-Type: application/jsonx',
        $valid{$api});
    add("ctype-multipart-$api", $api, '415',
        'Content-Type: multipart/form-data; boundary=x', $valid{$api});
    add("ctype-empty-$api", $api, '415', 'Content-Type: ', $valid{$api});
    add("ctype-charset-$api", $api, 'fwd',
        'Content-Type: application/json; charset=utf-8', $valid{$api});
}


# -- 14. odd but valid bodies: forwarded ---------------------------------------------

add('valid-extra-whitespace-chat', 'chat', 'fwd', undef,
    " \n\t{ \"model\" : \"m\" , \"messages\" : [ { \"role\" : \"user\" ,"
    . " \"content\" : \"hi\" } ] } \r\n");
add('valid-empty-key-chat', 'chat', 'fwd', undef, chat_with(',"":1'));
add('valid-nested-dup-in-metadata-messages', 'messages', 'fwd', undef,
    msg_with(',"metadata":{"a":1,"a":2}'));
add('valid-null-optionals-chat', 'chat', 'fwd', undef,
    chat_with(',"max_tokens":null,"n":null,"temperature":null,'
              . '"top_p":null,"seed":null,"tools":null,"stream":null'));
add('valid-negative-zero-max-tokens-chat', 'chat', 'fwd', undef,
    chat_with(',"max_tokens":-0'));
add('valid-exponent-max-tokens-messages', 'messages', 'fwd', undef,
    '{"model":"m","max_tokens":1.6e1,"messages":[{"role":"user",'
    . '"content":"hi"}]}');
add('valid-escaped-slash-chat', 'chat', 'fwd', undef,
    chat_content('a\\/b\\u0041'));
add('valid-completions-token-ids', 'completions', 'fwd', undef,
    '{"model":"m","prompt":[1,2,3]}');
add('valid-embeddings-array', 'embeddings', 'fwd', undef,
    '{"model":"m","input":["a","b"]}');


print "# generated by t/corpus/gen.pl: do not edit, regenerate\n";
print "$_\n" for @cases;
