// The official SDKs against the gateway, unchanged but for the base URL:
// plain and streamed answers, usage, errors, and the SDK's own retry on
// the gateway's 429 (it must wait what retry-after says, then succeed).
// Run by t/sdk/run.sh, which starts the mock, nginx and the module.

import test from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const base = process.env.GATEWAY;
const chat = [{ role: 'user', content: 'Say hello to the SDK test' }];

function counting() {
    const seen = [];
    const f = async (url, init) => {
        const r = await fetch(url, init);
        seen.push(r.status);
        return r;
    };
    return { seen, fetch: f };
}

test('OpenAI: chat completion with usage', async () => {
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-sdk-1' });
    const r = await c.chat.completions.create({
        model: 'mock', messages: chat, max_tokens: 5 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.usage.completion_tokens, 5);
    assert.ok(r.choices[0].message.content.length > 0);
});

test('OpenAI: a stream arrives chunk by chunk, without a usage chunk '
     + 'the client did not ask for', async () => {
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-sdk-1' });
    const s = await c.chat.completions.create({
        model: 'mock', messages: chat, max_tokens: 4, stream: true });
    let text = '', chunks = 0, usage = null;
    for await (const ch of s) {
        chunks++;
        if (ch.usage) usage = ch.usage;
        text += ch.choices[0]?.delta?.content ?? '';
    }
    assert.ok(chunks >= 5, `${chunks} chunks`);
    assert.equal(text.trim().split(/\s+/).length, 4);
    assert.equal(usage, null);
});

test('OpenAI: a stream with include_usage ends with its usage', async () => {
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-sdk-1' });
    const s = await c.chat.completions.create({
        model: 'mock', messages: chat, max_tokens: 3, stream: true,
        stream_options: { include_usage: true } });
    let usage = null;
    for await (const ch of s) {
        if (ch.usage) usage = ch.usage;
    }
    assert.equal(usage.completion_tokens, 3);
});

test('OpenAI: embeddings (the SDK asks for base64)', async () => {
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-sdk-1' });
    const r = await c.embeddings.create({
        model: 'text-embedding-3-small', input: ['one', 'two'] });
    assert.equal(r.data.length, 2);
    assert.ok(r.data[0].embedding.length > 0);
});

test('OpenAI: a bad request raises BadRequestError naming the param',
     async () => {
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'sk-sdk-1',
                           maxRetries: 0 });
    await assert.rejects(
        c.chat.completions.create({ model: 'mock', messages: 'hi' }),
        (e) => e instanceof OpenAI.BadRequestError && e.status === 400
               && e.param === 'messages');
});

test('OpenAI: on the gateway\'s 429 the SDK waits retry-after and '
     + 'succeeds', async () => {
    const url = `${base}/limited/v1/chat/completions`;
    const body = JSON.stringify({ model: 'mock', messages: chat,
                                  max_tokens: 1 });
    const hdrs = { 'content-type': 'application/json',
                   authorization: 'Bearer sk-sdk-limited' };

    // spend the key's minute (rpm=60: a full bucket holds 60) without
    // retries, until the gateway refuses
    let refused = null;
    for (let i = 0; i < 200 && !refused; i++) {
        const r = await fetch(url, { method: 'POST', headers: hdrs, body });
        if (r.status === 429) {
            refused = r;
        }
        await r.arrayBuffer();
    }
    assert.ok(refused, 'the limit never refused');
    const after = Number(refused.headers.get('retry-after-ms')
                         ?? refused.headers.get('retry-after') * 1000);
    assert.ok(after > 0 && after <= 2000, `retry-after-ms ${after}`);
    assert.equal(refused.headers.get('x-ratelimit-remaining-requests'), '0');

    const cnt = counting();
    const c = new OpenAI({ baseURL: `${base}/limited/v1`,
                           apiKey: 'sk-sdk-limited', maxRetries: 3,
                           fetch: cnt.fetch });
    const t0 = Date.now();
    const r = await c.chat.completions.create({
        model: 'mock', messages: chat, max_tokens: 1 });
    const waited = Date.now() - t0;

    assert.equal(r.object, 'chat.completion');
    assert.equal(cnt.seen[0], 429);
    assert.equal(cnt.seen[cnt.seen.length - 1], 200);
    assert.ok(waited >= 300, `succeeded after ${waited} ms`);
});

test('Anthropic: a message with usage', async () => {
    const c = new Anthropic({ baseURL: base, apiKey: 'sk-ant-sdk' });
    const m = await c.messages.create({
        model: 'claude-mock', max_tokens: 4, messages: chat });
    assert.equal(m.type, 'message');
    assert.equal(m.usage.output_tokens, 4);
    assert.equal(m.content[0].type, 'text');
});

test('Anthropic: a stream with its events and final usage', async () => {
    const c = new Anthropic({ baseURL: base, apiKey: 'sk-ant-sdk' });
    const s = c.messages.stream({
        model: 'claude-mock', max_tokens: 3, messages: chat });
    let text = '';
    s.on('text', (t) => { text += t; });
    const m = await s.finalMessage();
    assert.equal(text.trim().split(/\s+/).length, 3);
    assert.equal(m.usage.output_tokens, 3);
});

test('Anthropic: a bad request raises BadRequestError', async () => {
    const c = new Anthropic({ baseURL: base, apiKey: 'sk-ant-sdk',
                              maxRetries: 0 });
    await assert.rejects(
        c.messages.create({ model: 'claude-mock', messages: chat }),
        (e) => e instanceof Anthropic.BadRequestError && e.status === 400
               && /max_tokens/.test(e.message));
});
