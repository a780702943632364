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

std::optional<WireError> parse_usage_batch(const std::string &body, TimeMs now,
                                           std::vector<UsageRecord> &records,
                                           std::vector<std::string> &rejected) {
  simdjson::dom::element root;
  if (auto e = parse_json(body, root)) {
    return e;
  }
  json::Errors top_errs;
  json::Obj top(root, "", top_errs);
  auto items = top.arr("records", true);
  if (!top_errs.ok()) {
    return WireError{"invalid_request", top_errs.first};
  }
  records.reserve(records.size() + items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    json::Errors errs;
    json::Obj o(items[i], "records[" + std::to_string(i) + "]", errs);
    UsageRecord r;
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
      rejected.push_back(errs.first);
      continue;
    }
    records.push_back(std::move(r));
  }
  return std::nullopt;
}

} // namespace llm
