#include "handlers.hpp"

#include "domain/time.hpp"
#include "json.hpp"
#include "wire.hpp"

#include <algorithm>
#include <span>

namespace llm {

namespace {

thread_local simdjson::dom::parser t_parser;

bool parse_body(const std::string &body, simdjson::dom::element &root,
                std::string &err) {
  if (auto e = t_parser.parse(body).get(root)) {
    err = std::string("invalid JSON: ") + simdjson::error_message(e);
    return false;
  }
  return true;
}

bool has_control(const std::string &s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20;
  });
}

HttpResponse json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

void write_totals(json::Writer &w, const Totals &t) {
  w.field("requests", t.requests)
      .field("errors", t.errors)
      .field("prompt_tokens", t.prompt_tokens)
      .field("cached_tokens", t.cached_tokens)
      .field("cache_write_tokens", t.cache_write_tokens)
      .field("completion_tokens", t.completion_tokens)
      .field("reasoning_tokens", t.reasoning_tokens)
      .field("cost_usd_micros", t.cost)
      .field("cost_usd", format_usd(t.cost));
  w.key("cached_share")
      .value_double(t.prompt_tokens > 0
                        ? static_cast<double>(t.cached_tokens) /
                              static_cast<double>(t.prompt_tokens)
                        : 0.0);
}

void write_budget(json::Writer &w, const BudgetView &v) {
  const Budget &b = v.budget;
  w.begin_object()
      .field("scope", scope_name(b.scope))
      .field("id", b.id)
      .field("limit_usd_micros", b.limit)
      .field("window", window_name(b.window));
  w.key("alert_thresholds").begin_array();
  for (int t : b.thresholds) {
    w.value(t);
  }
  w.end_array()
      .field("spent_usd_micros", v.spent)
      .field("remaining_usd_micros", std::max<Micros>(b.limit - v.spent, 0))
      .field("window_start", format_time(v.window.start))
      .field("window_end", format_time(v.window.end));
  if (b.window == Window::days30) {
    w.field("anchor", format_time(b.anchor));
  }
  w.end_object();
}

int hex(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::string csv_cell(const std::string &s) {
  if (s.find_first_of(",\"\n") == std::string::npos) {
    return s;
  }
  std::string out = "\"";
  for (char c : s) {
    out += c == '"' ? "\"\"" : std::string(1, c);
  }
  return out + "\"";
}

} // namespace

std::optional<std::string> query_param(const std::string &query,
                                       const std::string &name) {
  std::size_t pos = 0;
  while (pos <= query.size()) {
    std::size_t amp = query.find('&', pos);
    if (amp == std::string::npos) {
      amp = query.size();
    }
    const std::string part = query.substr(pos, amp - pos);
    const std::size_t eq = part.find('=');
    if (part.substr(0, eq) == name) {
      const std::string raw =
          eq == std::string::npos ? "" : part.substr(eq + 1);
      std::string out;
      for (std::size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '+') {
          out.push_back(' ');
        } else if (raw[i] == '%' && i + 2 < raw.size() &&
                   hex(raw[i + 1]) >= 0 && hex(raw[i + 2]) >= 0) {
          out.push_back(
              static_cast<char>(hex(raw[i + 1]) * 16 + hex(raw[i + 2])));
          i += 2;
        } else {
          out.push_back(raw[i]);
        }
      }
      return out;
    }
    pos = amp + 1;
  }
  return std::nullopt;
}

HttpResponse Handlers::error(int status, const std::string &code,
                             const std::string &message) {
  json::Writer w;
  w.begin_object().key("error").begin_object();
  w.field("message", message)
      .field("type", status >= 500 ? "server_error" : "invalid_request_error")
      .field("code", code)
      .end_object()
      .end_object();
  return json_response(status, w.take());
}

bool Handlers::authorized(const HttpRequest &req) const {
  const std::string want = "Bearer " + m_engine.config()->admin_token;
  // Constant-time comparison of equal-length strings.
  if (req.authorization.size() != want.size()) {
    return false;
  }
  unsigned char diff = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff |= static_cast<unsigned char>(req.authorization[i] ^ want[i]);
  }
  return diff == 0;
}

HttpResponse Handlers::route(const HttpRequest &req) {
  RouteRequest r;
  if (auto e = parse_route_request(req.body, r)) {
    return error(400, e->code, e->message);
  }
  const RouteDecision d = m_engine.route(r);

  json::Writer w;
  w.begin_object().field("action", d.allow ? "allow" : "deny");
  if (!d.allow) {
    w.field("code", deny_code_name(d.code));
  }
  w.field("reason", d.reason);
  if (d.allow) {
    w.field("upstream", d.target.upstream).field("model", d.target.model);
    w.key("fallbacks").begin_array();
    for (const Target &t : d.fallbacks) {
      w.begin_object()
          .field("upstream", t.upstream)
          .field("model", t.model)
          .end_object();
    }
    w.end_array().field("max_tokens_cap", d.max_tokens_cap);
    w.key("prompt_cache").begin_object().key("breakpoints").begin_array();
    for (const std::string &b : d.breakpoints) {
      w.value(b);
    }
    w.end_array();
    if (!d.prompt_cache_key.empty()) {
      w.field("prompt_cache_key", d.prompt_cache_key);
    }
    w.end_object().field("downgraded", d.downgraded);
  }
  w.field("ttl_ms", d.ttl_ms);
  if (!d.class_name.empty()) {
    w.field("class", d.class_name);
  }
  w.end_object();
  return json_response(200, w.take());
}


void Handlers::usage(const HttpRequest &req, Reply reply) {
  // Records of this thread's batches reuse their strings' buffers: the
  // engine copies what it keeps (ledger cells, journal frames).
  thread_local std::vector<UsageRecord> t_records;
  std::size_t used = 0;
  std::vector<std::string> rejected;
  if (auto e = parse_usage_batch_into(req.body, now_ms(), t_records, used,
                                      rejected)) {
    reply(error(400, e->code, e->message));
    return;
  }
  m_engine.ingest(
      std::span<UsageRecord>(t_records.data(), used),
      [reply = std::move(reply),
                           rejected = std::move(rejected)](IngestResult res) {
        if (!res.durable) {
          reply(error(503, "ledger_unavailable",
                      "usage not persisted; retry later"));
          return;
        }
        json::Writer w;
        w.begin_object()
            .field("accepted", static_cast<std::int64_t>(res.accepted))
            .field("duplicates", static_cast<std::int64_t>(res.duplicates))
            .field("rejected", static_cast<std::int64_t>(rejected.size()));
        if (!rejected.empty()) {
          w.key("errors").begin_array();
          for (const std::string &e : rejected) {
            w.value(e);
          }
          w.end_array();
        }
        w.end_object();
        reply(json_response(200, w.take()));
      });
}

HttpResponse Handlers::spend(const HttpRequest &req) {
  SpendQuery q;
  const std::string gb = query_param(req.query, "group_by").value_or("team");
  auto g = parse_group_by(gb);
  if (!g) {
    return error(400, "invalid_request",
                 "group_by: must be key, team, model or day");
  }
  q.group_by = *g;
  q.key = query_param(req.query, "key");
  q.team = query_param(req.query, "team");
  q.model = query_param(req.query, "model");
  for (const char *bound : {"from", "to"}) {
    if (auto v = query_param(req.query, bound)) {
      auto t = parse_time(*v);
      if (!t) {
        return error(400, "invalid_request",
                     std::string(bound) +
                         ": must be ISO 8601 (UTC) or unix ms");
      }
      (std::string(bound) == "from" ? q.from_day : q.to_day) = day_index(*t);
    }
  }
  const std::string format = query_param(req.query, "format").value_or("json");
  if (format != "json" && format != "csv") {
    return error(400, "invalid_request", "format: must be json or csv");
  }
  std::vector<SpendRow> rows;
  std::string err;
  if (!m_engine.spend(q, rows, err)) {
    return error(503, "ledger_unavailable", err);
  }
  Totals total;
  for (const SpendRow &r : rows) {
    total.add(r.totals);
  }
  if (format == "csv") {
    HttpResponse res;
    res.content_type = "text/csv; charset=utf-8";
    res.body = gb + ",requests,errors,prompt_tokens,cached_tokens,"
                    "cache_write_tokens,completion_tokens,"
                    "reasoning_tokens,cost_usd_micros,cost_usd\n";
    for (const SpendRow &r : rows) {
      const Totals &t = r.totals;
      res.body += csv_cell(r.group) + "," + std::to_string(t.requests) + "," +
                  std::to_string(t.errors) + "," +
                  std::to_string(t.prompt_tokens) + "," +
                  std::to_string(t.cached_tokens) + "," +
                  std::to_string(t.cache_write_tokens) + "," +
                  std::to_string(t.completion_tokens) + "," +
                  std::to_string(t.reasoning_tokens) + "," +
                  std::to_string(t.cost) + "," + format_usd(t.cost) + "\n";
    }
    return res;
  }
  json::Writer w;
  w.begin_object().field("group_by", gb).key("rows").begin_array();
  for (const SpendRow &r : rows) {
    w.begin_object().field(gb, r.group);
    write_totals(w, r.totals);
    w.end_object();
  }
  w.end_array().key("total").begin_object();
  write_totals(w, total);
  w.end_object().end_object();
  return json_response(200, w.take());
}

HttpResponse Handlers::budgets_list(const HttpRequest &req) {
  if (!authorized(req)) {
    return error(401, "unauthorized", "admin token required");
  }
  json::Writer w;
  w.begin_object().key("budgets").begin_array();
  for (const BudgetView &v : m_engine.budgets()) {
    write_budget(w, v);
  }
  w.end_array().end_object();
  return json_response(200, w.take());
}

HttpResponse Handlers::budget_get(const HttpRequest &req,
                                  const std::string &scope,
                                  const std::string &id) {
  if (!authorized(req)) {
    return error(401, "unauthorized", "admin token required");
  }
  auto s = parse_scope(scope);
  if (!s) {
    return error(400, "invalid_request", "scope: must be key or team");
  }
  auto v = m_engine.budget(*s, id);
  if (!v) {
    return error(404, "not_found", "no " + scope + " budget for " + id);
  }
  json::Writer w;
  write_budget(w, *v);
  return json_response(200, w.take());
}

HttpResponse Handlers::budget_put(const HttpRequest &req,
                                  const std::string &path_scope,
                                  const std::string &path_id) {
  if (!authorized(req)) {
    return error(401, "unauthorized", "admin token required");
  }
  simdjson::dom::element root;
  std::string perr;
  if (!parse_body(req.body, root, perr)) {
    return error(400, "invalid_json", perr);
  }
  json::Errors errs;
  json::Obj o(root, "", errs);
  Budget b;
  const std::string scope = o.str("scope", path_scope.empty(), path_scope);
  b.id = o.str("id", path_id.empty(), path_id);
  b.limit = o.i64("limit_usd_micros", true);
  const std::string window = o.str("window", false, "month");
  if (o.has("alert_thresholds")) {
    b.thresholds.clear();
    auto items = o.arr("alert_thresholds");
    for (std::size_t i = 0; i < items.size(); ++i) {
      std::int64_t t = 0;
      if (items[i].get_int64().get(t) != simdjson::SUCCESS || t < 1 ||
          t > 1000) {
        errs.add(o.at("alert_thresholds") + "[" + std::to_string(i) + "]",
                 "must be an integer percentage in [1, 1000]");
      }
      b.thresholds.push_back(static_cast<int>(t));
    }
    std::sort(b.thresholds.begin(), b.thresholds.end());
  }
  if (!errs.ok()) {
    return error(400, "invalid_request", errs.first);
  }
  auto s = parse_scope(scope);
  auto win = parse_window(window);
  if (!s) {
    return error(400, "invalid_request", "budget.scope: must be key or team");
  }
  if (!win) {
    return error(400, "invalid_request",
                 "budget.window: must be day, week, 30d or month");
  }
  if ((!path_scope.empty() && scope != path_scope) ||
      (!path_id.empty() && b.id != path_id)) {
    return error(400, "invalid_request",
                 "budget: scope/id in the body differ from the path");
  }
  if (b.id.empty() || has_control(b.id)) {
    return error(400, "invalid_request", "budget.id: must be non-empty");
  }
  b.scope = *s;
  b.window = *win;
  b.anchor = day_start(day_index(now_ms()));
  if (auto anchor = o.get("anchor")) {
    std::string_view a;
    std::optional<TimeMs> t;
    if (anchor->get_string().get(a) == simdjson::SUCCESS) {
      t = parse_time(a);
    }
    if (!t) {
      return error(400, "invalid_request",
                   "budget.anchor: must be an ISO 8601 date");
    }
    b.anchor = day_start(day_index(*t));
  } else if (auto old = m_engine.budget(b.scope, b.id)) {
    b.anchor = old->budget.anchor; // keep the 30d cycle on update
  }
  std::string err;
  if (!m_engine.put_budget(b, err)) {
    return error(503, "ledger_unavailable", err);
  }
  return budget_get(req, scope, b.id);
}

HttpResponse Handlers::budget_delete(const HttpRequest &req,
                                     const std::string &scope,
                                     const std::string &id) {
  if (!authorized(req)) {
    return error(401, "unauthorized", "admin token required");
  }
  auto s = parse_scope(scope);
  if (!s) {
    return error(400, "invalid_request", "scope: must be key or team");
  }
  bool found = false;
  std::string err;
  if (!m_engine.delete_budget(*s, id, found, err)) {
    return error(503, "ledger_unavailable", err);
  }
  if (!found) {
    return error(404, "not_found", "no " + scope + " budget for " + id);
  }
  return json_response(200, "{\"deleted\":true}");
}

HttpResponse Handlers::metrics(const HttpRequest &) {
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = m_engine.metrics();
  return r;
}

HttpResponse Handlers::health(const HttpRequest &) {
  std::string why;
  const bool ok = m_engine.healthy(why);
  json::Writer w;
  w.begin_object()
      .field("status", ok ? "ok" : "failing")
      .field("ledger", m_engine.redis_mode() ? "redis" : "embedded");
  if (!ok) {
    w.field("reason", why);
  }
  w.end_object();
  return json_response(ok ? 200 : 503, w.take());
}

} // namespace llm
