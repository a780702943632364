#include "config.hpp"

#include "json.hpp"

#include <fstream>
#include <sstream>

namespace llm {

namespace {

std::string read_file(const std::string &path, const std::string &what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ConfigError(what + ": cannot read " + path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string dir_of(const std::string &path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string resolve(const std::string &base, const std::string &p) {
  if (p.empty() || p[0] == '/') {
    return p;
  }
  return base + "/" + p;
}

struct PriceEntry {
  ModelInfo info;
};

const char *const k_price_fields[] = {"input_per_mtok", "output_per_mtok",
                                      "cache_read_per_mtok",
                                      "cache_write_per_mtok"};

void read_prices(const json::Obj &o, ModelInfo &m) {
  std::int64_t *slots[] = {&m.price.input_per_mtok, &m.price.output_per_mtok,
                           &m.price.cache_read_per_mtok,
                           &m.price.cache_write_per_mtok};
  for (int i = 0; i < 4; ++i) {
    *slots[i] = o.i64(k_price_fields[i], false, *slots[i]);
  }
  m.context_window = o.i64("context_window", false, m.context_window);
  m.max_output_tokens = o.i64("max_output_tokens", false, m.max_output_tokens);
  m.min_cacheable_tokens =
      o.i64("min_cacheable_tokens", false, m.min_cacheable_tokens);
  m.provider = o.str("provider", false, m.provider);
}

std::unordered_map<std::string, ModelInfo>
load_price_table(const std::string &path, const ConfigReader &read) {
  const std::string text = read(path);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(text).get(root)) {
    throw ConfigError("price table " + path +
                      ": invalid JSON: " + simdjson::error_message(err));
  }
  json::Errors errs{"price table " + path + ": ", {}};
  json::Obj top(root, "", errs);
  std::unordered_map<std::string, ModelInfo> out;
  auto models = top.arr("models", true);
  for (std::size_t i = 0; i < models.size(); ++i) {
    json::Obj o(models[i], "models[" + std::to_string(i) + "]", errs);
    ModelInfo m;
    m.name = o.str("name", true);
    for (const char *f : k_price_fields) {
      o.i64(f, true);
    }
    o.i64("context_window", true);
    o.str("provider", true);
    o.str("source", true);
    o.str("date", true);
    read_prices(o, m);
    if (errs.ok() && !out.emplace(m.name, m).second) {
      errs.add(o.at("name"), "duplicate model " + m.name);
    }
  }
  if (!errs.ok()) {
    throw ConfigError(errs.first);
  }
  return out;
}

} // namespace

Config parse_config(const std::string &text, const std::string &base_dir) {
  return parse_config(text, base_dir, [](const std::string &path) {
    return read_file(path, "config: price_table");
  });
}

Config parse_config(const std::string &text, const std::string &base_dir,
                    const ConfigReader &read) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto err = parser.parse(text).get(root)) {
    throw ConfigError(std::string("config: invalid JSON: ") +
                      simdjson::error_message(err));
  }
  json::Errors errs{"config: ", {}};
  json::Obj top(root, "", errs);
  Config c;

  // Unknown top-level keys are mistakes (a typo silently ignored is the
  // worst kind of config error).
  static const char *const known[] = {
      "listen",    "threads",     "data_dir", "admin_token",
      "log_level", "price_table", "models",   "aliases",
      "classes",   "teams",       "routing",  "prompt_cache",
      "ledger",    "redis",       "alerts",   "comment"};
  for (const auto &[k, v] : top.members()) {
    bool ok = false;
    for (const char *n : known) {
      ok = ok || k == n;
    }
    if (!ok) {
      errs.add(top.at(k), "unknown field");
    }
  }

  if (auto l = top.obj("listen", true)) {
    c.listen.unix_path = resolve(base_dir, l->str("unix"));
    const std::string mode = l->str("unix_mode", false, "0660");
    char *end = nullptr;
    const unsigned long m = std::strtoul(mode.c_str(), &end, 8);
    if (mode.empty() || *end != '\0' || m > 0777) {
      errs.add(l->at("unix_mode"), "must be an octal mode like \"0660\"");
    }
    c.listen.unix_mode = static_cast<unsigned>(m);
    const std::string tcp = l->str("tcp");
    if (!tcp.empty()) {
      const auto colon = tcp.rfind(':');
      c.listen.tcp_host =
          colon == std::string::npos ? std::string() : tcp.substr(0, colon);
      const int port =
          colon == std::string::npos ? 0 : std::atoi(tcp.c_str() + colon + 1);
      if (port <= 0 || port > 65535 ||
          (c.listen.tcp_host != "127.0.0.1" && c.listen.tcp_host != "::1" &&
           c.listen.tcp_host != "localhost")) {
        errs.add(l->at("tcp"),
                 "must be a loopback address like 127.0.0.1:18300");
      }
      c.listen.tcp_port = static_cast<unsigned>(port);
    }
    if (c.listen.unix_path.empty() && c.listen.tcp_port == 0) {
      errs.add(top.at("listen"), "needs \"unix\" or \"tcp\"");
    }
  }
  c.threads = static_cast<int>(top.i64("threads", false, 2, 1, 64));
  c.data_dir = resolve(base_dir, top.str("data_dir", true));
  c.admin_token = top.str("admin_token", true);
  if (errs.ok() && c.admin_token.size() < 16) {
    errs.add(top.at("admin_token"), "must be at least 16 characters");
  }
  const std::string level = top.str("log_level", false, "info");
  if (!parse_log_level(level, c.log_level)) {
    errs.add(top.at("log_level"), "must be debug, info, warn or error");
  }

  std::unordered_map<std::string, ModelInfo> table;
  const std::string price_path =
      resolve(base_dir, top.str("price_table", false));
  if (!errs.ok()) {
    throw ConfigError(errs.first);
  }
  if (!price_path.empty()) {
    table = load_price_table(price_path, read);
  }
  for (const auto &[name, m] : table) {
    c.prices[name] = m.price;
  }

  RouterConfig &rc = c.router;
  auto models = top.arr("models", true);
  if (models.empty() && errs.ok()) {
    errs.add(top.at("models"), "must list at least one model");
  }
  for (std::size_t i = 0; i < models.size(); ++i) {
    json::Obj o(models[i], "models[" + std::to_string(i) + "]", errs);
    ModelInfo m;
    m.name = o.str("name", true);
    auto known_model = table.find(m.name);
    const bool in_table = known_model != table.end();
    if (in_table) {
      m = known_model->second;
    }
    read_prices(o, m);
    if (!in_table && errs.ok()) {
      for (const char *f : k_price_fields) {
        if (!o.has(f)) {
          errs.add(o.at(f),
                   "required (model " + m.name + " is not in the price table)");
        }
      }
      if (!o.has("context_window")) {
        errs.add(o.at("context_window"),
                 "required (model " + m.name + " is not in the price table)");
      }
    }
    m.upstream = o.str("upstream", true);
    m.api =
        o.str("api", false, m.provider == "anthropic" ? "anthropic" : "openai");
    if (m.api != "openai" && m.api != "anthropic") {
      errs.add(o.at("api"), "must be openai or anthropic");
    }
    m.tier = static_cast<int>(o.i64("tier", false, 1, 1, 100));
    if (auto f = o.obj("features")) {
      m.tools = f->boolean("tools", true);
      m.images = f->boolean("images", false);
      m.json_mode = f->boolean("json_mode", true);
    }
    m.fallbacks = o.strings("fallbacks");
    for (const auto &other : rc.models) {
      if (other.name == m.name) {
        errs.add(o.at("name"), "duplicate model " + m.name);
      }
    }
    c.prices[m.name] = m.price;
    rc.models.push_back(std::move(m));
  }
  for (std::size_t i = 0; i < rc.models.size(); ++i) {
    for (const std::string &f : rc.models[i].fallbacks) {
      bool found = false;
      for (const auto &m : rc.models) {
        found = found || m.name == f;
      }
      if (!found) {
        errs.add("models[" + std::to_string(i) + "].fallbacks",
                 "unknown model " + f);
      }
    }
  }

  auto classes = top.arr("classes");
  for (std::size_t i = 0; i < classes.size(); ++i) {
    json::Obj o(classes[i], "classes[" + std::to_string(i) + "]", errs);
    RequestClass rcl;
    rcl.name = o.str("name", true);
    rcl.min_tier = static_cast<int>(o.i64("min_tier", false, 1, 1, 100));
    rcl.max_prompt_tokens = o.i64("max_prompt_tokens", false, 0);
    auto cx = o.strings("complexity");
    for (std::size_t j = 0; j < cx.size(); ++j) {
      auto v = parse_complexity(cx[j]);
      if (!v) {
        errs.add(o.at("complexity") + "[" + std::to_string(j) + "]",
                 "must be low, medium or high");
      } else {
        rcl.complexity.push_back(*v);
      }
    }
    if (o.has("tools")) {
      rcl.tools = o.boolean("tools");
    }
    if (o.has("images")) {
      rcl.images = o.boolean("images");
    }
    rc.classes.push_back(std::move(rcl));
  }
  if (rc.classes.empty()) {
    rc.classes.push_back(RequestClass{"default", 1, 0, {}, {}, {}});
  }

  if (auto al = top.obj("aliases")) {
    for (const auto &[name, v] : al->members()) {
      json::Obj o(v, al->at(name), errs);
      Alias a{name, o.str("model"), o.str("class")};
      if (!a.model.empty() && !a.class_name.empty()) {
        errs.add(o.path(), "set either model or class, not both");
      }
      bool found = a.model.empty() && a.class_name.empty();
      for (const auto &m : rc.models) {
        found = found || m.name == a.model;
        if (m.name == name) {
          errs.add(o.path(), "alias shadows a model of that name");
        }
      }
      for (const auto &cl : rc.classes) {
        found = found || cl.name == a.class_name;
      }
      if (!found) {
        errs.add(o.path(), "names an unknown model or class");
      }
      rc.aliases.push_back(std::move(a));
    }
  }

  if (auto teams = top.obj("teams")) {
    for (const auto &[name, v] : teams->members()) {
      json::Obj o(v, teams->at(name), errs);
      rc.allow[name] = o.strings("allow");
    }
  }

  if (auto r = top.obj("routing")) {
    RoutingParams &p = rc.routing;
    p.ttl_ms = r->i64("decision_ttl_ms", false, p.ttl_ms);
    p.budget_ttl_ms = r->i64("budget_ttl_ms", false, p.budget_ttl_ms);
    p.max_fallbacks =
        static_cast<std::size_t>(r->i64("max_fallbacks", false, 2, 0, 10));
    p.equivalence_cost_ratio =
        r->number("equivalence_cost_ratio", 1.25, 1.0, 10.0);
    p.latency_weight = r->number("latency_weight", 0.5, 0.0, 100.0);
    p.assumed_output_tokens = r->i64("assumed_output_tokens", false, 512, 1);
    p.max_tokens_cap = r->i64("max_tokens_cap", false, 0);
    const auto cx = r->str("default_complexity", false, "medium");
    if (auto v = parse_complexity(cx)) {
      p.default_complexity = *v;
    } else {
      errs.add(r->at("default_complexity"), "must be low, medium or high");
    }
    c.budget_downgrade_permille = static_cast<int>(
        r->number("budget_downgrade_share", 0.8, 0.0, 1.0) * 1000 + 0.5);
  }
  if (auto pc = top.obj("prompt_cache")) {
    rc.cache.enabled = pc->boolean("enabled", true);
    rc.cache.max_breakpoints =
        static_cast<int>(pc->i64("max_breakpoints", false, 4, 0, 4));
    rc.cache.rolling_min_messages =
        pc->i64("rolling_min_messages", false, 3, 1);
  }
  if (auto l = top.obj("ledger")) {
    c.ledger.snapshot_every_records =
        l->i64("snapshot_every_records", false, 500'000, 1000);
    c.ledger.snapshot_interval_s = l->i64("snapshot_interval_s", false, 300, 1);
    c.ledger.dedup_window_hours =
        l->i64("dedup_window_hours", false, 24, 1, 24 * 90);
  }
  if (auto r = top.obj("redis")) {
    c.redis.enabled = r->boolean("enabled", true);
    c.redis.host = r->str("host", false, "127.0.0.1");
    c.redis.port = static_cast<unsigned>(r->i64("port", false, 6379, 1, 65535));
    c.redis.timeout_ms = r->i64("timeout_ms", false, 200, 1, 60'000);
    c.redis.prefix = r->str("prefix", false, "llm:");
    c.redis.sync_interval_ms =
        r->i64("sync_interval_ms", false, 500, 10, 60'000);
    c.redis.batch_records = r->i64("batch_records", false, 500, 1, 100'000);
  }
  if (auto a = top.obj("alerts")) {
    c.alerts.webhook_url = a->str("webhook_url");
    if (!c.alerts.webhook_url.empty() &&
        c.alerts.webhook_url.rfind("http://", 0) != 0 &&
        c.alerts.webhook_url.rfind("https://", 0) != 0) {
      errs.add(a->at("webhook_url"), "must be an http(s) URL");
    }
    c.alerts.timeout_ms = a->i64("timeout_ms", false, 2000, 1, 60'000);
    c.alerts.max_attempts = a->i64("max_attempts", false, 5, 1, 100);
    c.alerts.backoff_ms = a->i64("backoff_ms", false, 500, 1, 600'000);
    c.alerts.check_interval_ms =
        a->i64("check_interval_ms", false, 250, 10, 60'000);
  }
  if (!errs.ok()) {
    throw ConfigError(errs.first);
  }
  return c;
}

Config load_config(const std::string &path) {
  const std::string text = read_file(path, "config");
  Config c = parse_config(text, dir_of(path));
  c.path = path;
  return c;
}

} // namespace llm
