#include "store/codec.hpp"

#include <charconv>

namespace llm::codec {

namespace {

void put(std::string &out, std::string_view s) {
  out.push_back('\t');
  // not string_view::find_first_of(): one memchr() per character
  bool plain = true;
  for (char c : s) {
    plain &= c != '\\' && c != '\t' && c != '\n';
  }
  if (plain) {
    out.append(s);
    return;
  }
  for (char c : s) {
    switch (c) {
    case '\\':
      out += "\\\\";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\n':
      out += "\\n";
      break;
    default:
      out.push_back(c);
    }
  }
}

void put(std::string &out, std::int64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.push_back('\t');
  out.append(buf, p);
}

} // namespace

bool parse_i64(std::string_view s, std::int64_t &out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '\t') {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

std::string unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      ++i;
      out.push_back(s[i] == 't' ? '\t' : s[i] == 'n' ? '\n' : s[i]);
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string encode_usage(const UsageRecord &r, std::uint64_t seq) {
  std::string out;
  out.reserve(256);
  encode_usage(out, r, seq);
  return out;
}

void encode_usage(std::string &out, const UsageRecord &r, std::uint64_t seq) {
  out.push_back(k_usage);
  put(out, static_cast<std::int64_t>(seq));
  for (const std::string *s :
       {&r.request_id, &r.key_hash, &r.team, &r.model, &r.served_model,
        &r.upstream, &r.usage_source, &r.cache_status}) {
    put(out, *s);
  }
  for (std::int64_t v : {r.prompt_tokens, r.cached_tokens, r.cache_write_tokens,
                         r.completion_tokens, r.reasoning_tokens,
                         static_cast<std::int64_t>(r.status), r.ttft_ms,
                         r.duration_ms, r.ts, r.cost}) {
    put(out, v);
  }
}

bool decode_usage(std::string_view entry, UsageRecord &r, std::uint64_t &seq) {
  auto f = split(entry);
  if (f.size() != 20 || f[0] != std::string_view(&k_usage, 1)) {
    return false;
  }
  std::int64_t s = 0;
  if (!parse_i64(f[1], s)) {
    return false;
  }
  seq = static_cast<std::uint64_t>(s);
  std::string *strs[] = {&r.request_id,   &r.key_hash,     &r.team,
                         &r.model,        &r.served_model, &r.upstream,
                         &r.usage_source, &r.cache_status};
  for (int i = 0; i < 8; ++i) {
    *strs[i] = unescape(f[2 + i]);
  }
  std::int64_t status = 0;
  std::int64_t *nums[] = {&r.prompt_tokens,
                          &r.cached_tokens,
                          &r.cache_write_tokens,
                          &r.completion_tokens,
                          &r.reasoning_tokens,
                          &status,
                          &r.ttft_ms,
                          &r.duration_ms,
                          &r.ts,
                          &r.cost};
  for (int i = 0; i < 10; ++i) {
    if (!parse_i64(f[10 + i], *nums[i])) {
      return false;
    }
  }
  r.status = static_cast<int>(status);
  return true;
}

std::string encode_budget(const Budget &b) {
  std::string out(1, k_budget_put);
  put(out, scope_name(b.scope));
  put(out, b.id);
  put(out, b.limit);
  put(out, window_name(b.window));
  std::string th;
  for (int t : b.thresholds) {
    th += (th.empty() ? "" : ",") + std::to_string(t);
  }
  put(out, th);
  put(out, b.anchor);
  return out;
}

bool decode_budget(std::string_view entry, Budget &b) {
  auto f = split(entry);
  if (f.size() != 7) {
    return false;
  }
  auto scope = parse_scope(std::string(f[1]));
  auto window = parse_window(std::string(f[4]));
  if (!scope || !window || !parse_i64(f[3], b.limit) ||
      !parse_i64(f[6], b.anchor)) {
    return false;
  }
  b.scope = *scope;
  b.window = *window;
  b.id = unescape(f[2]);
  b.thresholds.clear();
  std::string_view th = f[5];
  while (!th.empty()) {
    const auto comma = th.find(',');
    std::int64_t v = 0;
    if (!parse_i64(th.substr(0, comma), v)) {
      return false;
    }
    b.thresholds.push_back(static_cast<int>(v));
    th = comma == std::string_view::npos ? std::string_view()
                                         : th.substr(comma + 1);
  }
  return true;
}

std::string encode_budget_delete(Scope s, const std::string &id) {
  std::string out(1, k_budget_del);
  put(out, scope_name(s));
  put(out, id);
  return out;
}

bool decode_budget_delete(std::string_view entry, Scope &s, std::string &id) {
  auto f = split(entry);
  if (f.size() != 3) {
    return false;
  }
  auto scope = parse_scope(std::string(f[1]));
  if (!scope) {
    return false;
  }
  s = *scope;
  id = unescape(f[2]);
  return true;
}

std::string encode_cell(const CubeKey &k, const Totals &t) {
  std::string out(1, k_cell);
  put(out, k.day);
  put(out, k.key);
  put(out, k.team);
  put(out, k.model);
  for (std::int64_t v : {t.requests, t.errors, t.prompt_tokens, t.cached_tokens,
                         t.cache_write_tokens, t.completion_tokens,
                         t.reasoning_tokens, t.cost}) {
    put(out, v);
  }
  return out;
}

bool decode_cell(std::string_view entry, CubeKey &k, Totals &t) {
  auto f = split(entry);
  if (f.size() != 13 || !parse_i64(f[1], k.day)) {
    return false;
  }
  k.key = unescape(f[2]);
  k.team = unescape(f[3]);
  k.model = unescape(f[4]);
  std::int64_t *nums[] = {&t.requests,           &t.errors,
                          &t.prompt_tokens,      &t.cached_tokens,
                          &t.cache_write_tokens, &t.completion_tokens,
                          &t.reasoning_tokens,   &t.cost};
  for (int i = 0; i < 8; ++i) {
    if (!parse_i64(f[5 + i], *nums[i])) {
      return false;
    }
  }
  return true;
}

std::string encode_simple(char type, std::string_view a) {
  std::string out(1, type);
  put(out, a);
  return out;
}

std::string encode_simple(char type, std::int64_t a, std::string_view b) {
  std::string out(1, type);
  put(out, a);
  put(out, b);
  return out;
}

} // namespace llm::codec
