#include "wire.hpp"

#include "domain/classifier.hpp"
#include "domain/time.hpp"
#include "json.hpp"

#include <algorithm>

namespace llm {

namespace {

thread_local simdjson::dom::parser t_parser;

std::optional<WireError> parse_json(const std::string &body,
                                    simdjson::dom::element &root) {
  if (auto e = t_parser.parse(body).get(root)) {
    return WireError{"invalid_json", std::string("invalid JSON: ") +
                                         simdjson::error_message(e)};
  }
  return std::nullopt;
}

bool has_control(const std::string &s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20;
  });
}

} // namespace

std::optional<WireError> parse_route_request(const std::string &body,
                                             RouteRequest &out) {
  simdjson::dom::element root;
  if (auto e = parse_json(body, root)) {
    return e;
  }
  json::Errors errs;
  json::Obj o(root, "", errs);
  RouteRequest r;
  r.key_hash = o.str("key_hash");
  r.team = o.str("team");
  r.model = o.str("model", true);
  r.api = o.str("api");
  r.prompt_tokens = o.i64("prompt_tokens", true);
  r.max_tokens = o.i64("max_tokens");
  r.stream = o.boolean("stream");
  r.prefix_hash = o.str("prefix_hash");
  r.messages = o.i64("messages");
  if (auto f = o.obj("features")) {
    r.tools = f->boolean("tools");
    r.images = f->boolean("images");
    r.json_mode = f->boolean("json_mode");
  }
  if (o.has("complexity")) {
    r.complexity = parse_complexity(o.str("complexity"));
    if (!r.complexity && errs.ok()) {
      errs.add(o.at("complexity"), "must be low, medium or high");
    }
  }
  if (r.api != "" && r.api != "openai" && r.api != "anthropic" && errs.ok()) {
    errs.add(o.at("api"), "must be openai or anthropic");
  }
  if (auto s = o.obj("prompt_shape")) {
    PromptShape &p = r.shape;
    p.tools_count = s->i64("tools_count");
    p.tools_tokens = s->i64("tools_tokens");
    p.system_blocks = s->i64("system_blocks");
    p.system_tokens = s->i64("system_tokens");
    p.last_user_index = s->i64("last_user_index", false, -1, -1);
    p.last_user_blocks = s->i64("last_user_blocks");
    p.client_breakpoints = s->i64("client_breakpoints", false, 0, 0, 4);
    p.client_paths = s->strings("client_paths");
  }
  if (!errs.ok()) {
    return WireError{"invalid_request", errs.first};
  }
  out = std::move(r);
  return std::nullopt;
}

namespace {

// The slow, exact path of one usage record: every error with its path.
// Returns false and sets err when the record is rejected.
bool parse_usage_checked(simdjson::dom::element item, std::size_t i,
                         TimeMs now, UsageRecord &r, std::string &err) {
  json::Errors errs;
  json::Obj o(item, "records[" + std::to_string(i) + "]", errs);
  r.request_id = o.str("request_id", true);
  r.key_hash = o.str("key_hash");
  r.team = o.str("team");
  r.model = o.str("model");
  r.served_model = o.str("served_model");
  r.upstream = o.str("upstream");
  r.usage_source = o.str("usage_source", false, "upstream");
  r.cache_status = o.str("cache_status");
  r.prompt_tokens = o.i64("prompt_tokens");
  r.cached_tokens = o.i64("cached_tokens");
  r.cache_write_tokens = o.i64("cache_write_tokens");
  r.completion_tokens = o.i64("completion_tokens");
  r.reasoning_tokens = o.i64("reasoning_tokens");
  r.status = static_cast<int>(o.i64("status", false, 200, 0, 999));
  r.ttft_ms = o.i64("ttft_ms");
  r.duration_ms = o.i64("duration_ms");
  r.ts = now;
  if (auto ts = o.get("ts")) {
    std::string_view s;
    std::int64_t ms = 0;
    if (ts->get_string().get(s) == simdjson::SUCCESS) {
      auto t = parse_time(s);
      if (t) {
        r.ts = *t;
      } else {
        errs.add(o.at("ts"), "must be ISO 8601 UTC or unix ms");
      }
    } else if (ts->get_int64().get(ms) == simdjson::SUCCESS) {
      r.ts = ms;
    } else {
      errs.add(o.at("ts"), "must be ISO 8601 UTC or unix ms");
    }
  }
  if (errs.ok() && r.request_id.empty()) {
    errs.add(o.at("request_id"), "must not be empty");
  }
  if (errs.ok() && r.model.empty() && r.served_model.empty()) {
    errs.add(o.at("model"), "model or served_model is required");
  }
  for (const std::string *s : {&r.request_id, &r.key_hash, &r.team, &r.model,
                               &r.served_model, &r.upstream}) {
    if (errs.ok() && (has_control(*s) || s->size() > 512)) {
      errs.add(o.path(), "strings must be <= 512 bytes without "
                         "control characters");
    }
  }
  if (!errs.ok()) {
    err = errs.first;
    return false;
  }
  return true;
}

bool valid_usage_string(std::string_view s) {
  if (s.size() > 512) {
    return false;
  }
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20) {
      return false;
    }
  }
  return true;
}

// The member of a usage record a key names for the fast path, in the
// order of parse_usage_fast's tables: 0-7 the strings (request_id,
// key_hash, team, model, served_model, upstream, usage_source,
// cache_status), 8-15 the counts (prompt_tokens, cached_tokens,
// cache_write_tokens, completion_tokens, reasoning_tokens, status,
// ttft_ms, duration_ms), 16 "ts", -1 the others.
// By length first: one comparison a key, not a search of both tables.
int usage_key(std::string_view k) {
  switch (k.size()) {
  case 2:
    return k == "ts" ? 16 : -1;
  case 4:
    return k == "team" ? 2 : -1;
  case 5:
    return k == "model" ? 3 : -1;
  case 6:
    return k == "status" ? 13 : -1;
  case 7:
    return k == "ttft_ms" ? 14 : -1;
  case 8:
    return k == "key_hash" ? 1 : k == "upstream" ? 5 : -1;
  case 10:
    return k == "request_id" ? 0 : -1;
  case 11:
    return k == "duration_ms" ? 15 : -1;
  case 12:
    return k == "served_model"   ? 4
           : k == "usage_source" ? 6
           : k == "cache_status" ? 7
                                 : -1;
  case 13:
    return k == "prompt_tokens"   ? 8
           : k == "cached_tokens" ? 9
                                  : -1;
  case 16:
    return k == "reasoning_tokens" ? 12 : -1;
  case 17:
    return k == "completion_tokens" ? 11 : -1;
  case 18:
    return k == "cache_write_tokens" ? 10 : -1;
  default:
    return -1;
  }
}

// The fast path of one usage record: one pass over its members, strings
// assigned into r's existing buffers (a reused record allocates nothing).
// Returns false whenever anything is unusual (a missing or repeated
// member, a type or range error, an invalid value): the caller then
// takes the exact path, which names the error.
bool parse_usage_fast(simdjson::dom::element item, TimeMs now,
                      UsageRecord &r) {
  simdjson::dom::object obj;
  if (item.get_object().get(obj) != simdjson::SUCCESS) {
    return false;
  }
  std::string *const strs[] = {&r.request_id,   &r.key_hash, &r.team,
                               &r.model,        &r.served_model,
                               &r.upstream,     &r.usage_source,
                               &r.cache_status};
  std::int64_t status = 200;
  std::int64_t *const nums[] = {&r.prompt_tokens,     &r.cached_tokens,
                                &r.cache_write_tokens, &r.completion_tokens,
                                &r.reasoning_tokens,  &status,
                                &r.ttft_ms,           &r.duration_ms};
  for (std::string *s : strs) {
    s->clear();
  }
  r.usage_source = "upstream";
  for (std::int64_t *n : nums) {
    *n = 0;
  }
  status = 200;
  r.ts = now;
  std::uint32_t seen = 0;
  for (auto field : obj) {
    const std::string_view k = field.key;
    if (field.value.is_null()) {
      return false; // absent for the exact path; rare
    }
    const int key = usage_key(k);
    int idx = key < 8 ? key : -1;
    if (idx >= 0) {
      std::string_view v;
      if ((seen & (1u << idx)) ||
          field.value.get_string().get(v) != simdjson::SUCCESS) {
        return false;
      }
      seen |= 1u << idx;
      strs[idx]->assign(v);
      continue;
    }
    idx = key >= 8 && key < 16 ? key - 8 : -1;
    if (idx >= 0) {
      std::int64_t v = 0;
      if ((seen & (1u << (8 + idx))) ||
          field.value.get_int64().get(v) != simdjson::SUCCESS || v < 0 ||
          (idx == 5 && v > 999)) {
        return false;
      }
      seen |= 1u << (8 + idx);
      *nums[idx] = v;
      continue;
    }
    if (key == 16) {
      if (seen & (1u << 16)) {
        return false;
      }
      seen |= 1u << 16;
      std::string_view s;
      std::int64_t ms = 0;
      if (field.value.get_string().get(s) == simdjson::SUCCESS) {
        auto t = parse_time(s);
        if (!t) {
          return false;
        }
        r.ts = *t;
      } else if (field.value.get_int64().get(ms) == simdjson::SUCCESS) {
        r.ts = ms;
      } else {
        return false;
      }
    }
    // other members are ignored, as by the exact path
  }
  r.status = static_cast<int>(status);
  if (r.request_id.empty() || (r.model.empty() && r.served_model.empty())) {
    return false;
  }
  for (int j = 0; j < 6; ++j) {
    if (!valid_usage_string(*strs[j])) {
      return false;
    }
  }
  return true;
}

} // namespace

std::optional<WireError>
parse_usage_batch_into(const std::string &body, TimeMs now,
                       std::vector<UsageRecord> &records, std::size_t &used,
                       std::vector<std::string> &rejected) {
  used = 0;
  simdjson::dom::element root;
  if (auto e = parse_json(body, root)) {
    return e;
  }
  json::Errors top_errs;
  json::Obj top(root, "", top_errs);
  simdjson::dom::array items;
  if (auto e = top.get("records");
      !e || e->get_array().get(items) != simdjson::SUCCESS) {
    top.arr("records", true); // the exact error
    return WireError{"invalid_request", top_errs.first};
  }
  std::size_t i = 0;
  for (simdjson::dom::element item : items) {
    if (used == records.size()) {
      records.emplace_back();
    }
    UsageRecord &r = records[used];
    std::string err;
    if (parse_usage_fast(item, now, r) ||
        parse_usage_checked(item, i, now, r, err)) {
      ++used;
    } else {
      rejected.push_back(std::move(err));
    }
    ++i;
  }
  return std::nullopt;
}

std::optional<WireError> parse_usage_batch(const std::string &body, TimeMs now,
                                           std::vector<UsageRecord> &records,
                                           std::vector<std::string> &rejected) {
  std::vector<UsageRecord> parsed;
  std::size_t used = 0;
  if (auto e = parse_usage_batch_into(body, now, parsed, used, rejected)) {
    return e;
  }
  records.reserve(records.size() + used);
  for (std::size_t i = 0; i < used; ++i) {
    records.push_back(std::move(parsed[i]));
  }
  return std::nullopt;
}

} // namespace llm
