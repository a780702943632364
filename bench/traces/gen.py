#!/usr/bin/env python3
"""Traces and replica scenarios for the balancing bench (bench/balance.sh).

    gen.py trace NAME [--seed N] [--requests N] > FILE
    gen.py mock-args SCENARIO --base-port P [--replicas 4]
                     [--prefill-us N] [--cache-blocks N]

Traces, one request a line for bench/loadgen (tab-separated: arrival,
key, path, body; arrival "-": loadgen draws Poisson arrivals):
  shared     SGLang-style shared prefixes: 64 groups x 16 prompts, each
             group's system prompt ~2048 tokens (~8 KB of text), a short
             distinct user question per prompt; every pass (1024
             requests) holds each (group, prompt) once, shuffled
  nosharing  every request has its own ~8 KB system prompt (no key)
  zipf       groups drawn Zipf s=1.1 over the 64 groups
Same seed, same bytes: every balancer gets the same requests in the same
order.

Scenarios print the llm-mock --listen arguments of the replicas:
  normal     all alike
  slow       the last replica 150 ms slower to first token, 3x the ITL
  429        the last replica answers 429 with Retry-After: 2
"""
import argparse
import json
import random
import sys

GROUPS, PER_GROUP = 64, 16
SYSTEM_BYTES = 8192        # the mock counts ceil(bytes / 4) tokens
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet "
         "kilo lima mike november oscar papa quebec romeo sierra tango "
         "uniform victor whiskey xray yankee zulu").split()


def system_prompt(tag):
    """~8 KB that differs between tags from the first block on."""
    rng = random.Random("system-%s" % tag)
    out = ["You are assistant %s. Answer briefly." % tag]
    size = len(out[0])
    while size < SYSTEM_BYTES:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:SYSTEM_BYTES]


def line(key, sys_prompt, question):
    body = json.dumps({
        "model": "mock", "max_tokens": 8,
        "messages": [{"role": "system", "content": sys_prompt},
                     {"role": "user", "content": question}]},
        separators=(",", ":"))
    return "-\t%s\t/v1/chat/completions\t%s" % (key, body)


def zipf_cdf(n, s):
    w = [1 / (k + 1) ** s for k in range(n)]
    total, acc, cdf = sum(w), 0.0, []
    for x in w:
        acc += x / total
        cdf.append(acc)
    return cdf


def trace(name, seed, requests):
    rng = random.Random(seed)
    prompts = {}

    def group_prompt(g):
        if g not in prompts:
            prompts[g] = system_prompt("group %d" % g)
        return prompts[g]

    if name == "shared":
        n, p = 0, 0
        while n < requests:
            order = [(g, i) for g in range(GROUPS) for i in range(PER_GROUP)]
            rng.shuffle(order)
            for g, i in order[:requests - n]:
                yield line(g, group_prompt(g),
                           "Question %d of pass %d: what is %d plus %d?"
                           % (i, p, g, i))
            n, p = n + len(order), p + 1
    elif name == "nosharing":
        for n in range(requests):
            yield line("-", system_prompt("request %d" % n),
                       "Question %d: what is %d plus 1?" % (n, n))
    elif name == "zipf":
        cdf = zipf_cdf(GROUPS, 1.1)
        for n in range(requests):
            u = rng.random()
            g = next((k for k, c in enumerate(cdf) if u <= c), GROUPS - 1)
            yield line(g, group_prompt(g),
                       "Question %d: what is %d plus %d?" % (n, g, n))
    else:
        sys.exit("gen.py: unknown trace %s (shared, nosharing, zipf)" % name)


def mock_args(scenario, base, replicas, prefill_us, blocks):
    args = []
    for r in range(replicas):
        spec = "127.0.0.1:%d,name=r%d,prefill_us=%d,cache_blocks=%d" % (
            base + r, r, prefill_us, blocks)
        last = r == replicas - 1
        if last and scenario == "slow":
            spec += ",ttft_ms=150,itl_ms=15"
        elif last and scenario == "429":
            spec += ",status=429,retry_after=2"
        elif scenario not in ("normal", "slow", "429"):
            sys.exit("gen.py: unknown scenario %s (normal, slow, 429)"
                     % scenario)
        args += ["--listen", spec]
    return args


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("trace")
    t.add_argument("name")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--requests", type=int, default=1024,
                   help="requests (shared: 1024 is one pass)")
    m = sub.add_parser("mock-args")
    m.add_argument("scenario")
    m.add_argument("--base-port", type=int, required=True)
    m.add_argument("--replicas", type=int, default=4)
    m.add_argument("--prefill-us", type=int, default=40)
    m.add_argument("--cache-blocks", type=int, default=2560)
    a = ap.parse_args()
    if a.cmd == "trace":
        out = sys.stdout
        for ln in trace(a.name, a.seed, a.requests):
            out.write(ln + "\n")
    else:
        print("\n".join(mock_args(a.scenario, a.base_port, a.replicas,
                                  a.prefill_us, a.cache_blocks)))


if __name__ == "__main__":
    main()
