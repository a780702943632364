#include "domain/router.hpp"

#include "domain/pricing.hpp"

#include <algorithm>
#include <cstdio>

namespace llm {

void ModelStats::observe(int status, std::int64_t latency) {
  const bool failure = status == 0 || status == 429 || status >= 500;
  const bool client_error = !failure && status >= 400;
  if (client_error) {
    return; // the caller's fault says nothing about the model
  }
  success += k_alpha * ((failure ? 0.0 : 1.0) - success);
  if (!failure && latency > 0) {
    latency_ms = samples == 0 && latency_ms == 0.0
                     ? static_cast<double>(latency)
                     : latency_ms + k_alpha * (latency - latency_ms);
  }
  ++samples;
}

const char *deny_code_name(DenyCode c) {
  switch (c) {
  case DenyCode::none:
    return "";
  case DenyCode::budget_exceeded:
    return "budget_exceeded";
  case DenyCode::context_length_exceeded:
    return "context_length_exceeded";
  case DenyCode::model_not_allowed:
    return "model_not_allowed";
  }
  return "";
}

Router::Router(RouterConfig cfg) : m_cfg(std::move(cfg)) {
  for (std::size_t i = 0; i < m_cfg.models.size(); ++i) {
    m_by_name.emplace(m_cfg.models[i].name, i);
  }
  if (m_cfg.classes.empty()) {
    m_cfg.classes.push_back(RequestClass{"default", 1, 0, {}, {}, {}});
  }
}

const ModelInfo *Router::find_model(const std::string &name) const {
  auto it = m_by_name.find(name);
  return it == m_by_name.end() ? nullptr : &m_cfg.models[it->second];
}

const Alias *Router::find_alias(const std::string &name) const {
  for (const Alias &a : m_cfg.aliases) {
    if (a.name == name) {
      return &a;
    }
  }
  return nullptr;
}

namespace {

bool pattern_match(const std::string &pattern, const std::string &name) {
  if (!pattern.empty() && pattern.back() == '*') {
    return name.compare(0, pattern.size() - 1, pattern, 0,
                        pattern.size() - 1) == 0;
  }
  return pattern == name;
}

RouteDecision deny(DenyCode code, std::string reason, std::int64_t ttl) {
  RouteDecision d;
  d.allow = false;
  d.code = code;
  d.reason = std::move(reason);
  d.ttl_ms = ttl;
  return d;
}

} // namespace

bool Router::allowed(const std::string &team, const std::string &model) const {
  if (m_cfg.allow.empty()) {
    return true;
  }
  auto it = m_cfg.allow.find(team);
  if (it == m_cfg.allow.end()) {
    it = m_cfg.allow.find("*");
    if (it == m_cfg.allow.end()) {
      return false;
    }
  }
  for (const std::string &p : it->second) {
    if (pattern_match(p, model)) {
      return true;
    }
  }
  return false;
}

bool Router::fits(const ModelInfo &m, const RouteRequest &req) const {
  return m.context_window <= 0 ||
         req.prompt_tokens + std::max<std::int64_t>(req.max_tokens, 0) <=
             m.context_window;
}

Micros Router::estimate(const ModelInfo &m, const RouteRequest &req) const {
  const std::int64_t out =
      req.max_tokens > 0
          ? std::min(req.max_tokens, m_cfg.routing.assumed_output_tokens)
          : m_cfg.routing.assumed_output_tokens;
  return estimated_cost(m.price, req.prompt_tokens, out);
}

std::vector<Router::Ranked> Router::candidates(const RouteRequest &req,
                                               const RequestClass &cls,
                                               const std::string &api,
                                               bool need_fit,
                                               const StatsTable &stats) const {
  std::vector<Ranked> out;
  for (const ModelInfo &m : m_cfg.models) {
    if (m.tier < cls.min_tier || (!api.empty() && m.api != api) ||
        (req.tools && !m.tools) || (req.images && !m.images) ||
        (req.json_mode && !m.json_mode) || !allowed(req.team, m.name)) {
      continue;
    }
    if (need_fit && !fits(m, req)) {
      continue;
    }
    const Micros cost = estimate(m, req);
    double score = static_cast<double>(cost + 1);
    auto it = stats.find(m.name);
    if (it != stats.end()) {
      score = score *
              (1.0 +
               m_cfg.routing.latency_weight * it->second.latency_ms / 1000.0) /
              std::max(it->second.success, 0.01);
    }
    out.push_back({&m, cost, score});
  }
  std::sort(out.begin(), out.end(), [](const Ranked &a, const Ranked &b) {
    return a.cost != b.cost ? a.cost < b.cost : a.model->name < b.model->name;
  });
  return out;
}

void Router::finish(RouteDecision &d, const ModelInfo &m,
                    const RouteRequest &req) const {
  d.allow = true;
  d.target = {m.upstream, m.name};
  std::int64_t cap = m.max_output_tokens > 0 ? m.max_output_tokens : INT64_MAX;
  if (m.context_window > 0) {
    cap = std::min(cap, m.context_window - req.prompt_tokens);
  }
  if (m_cfg.routing.max_tokens_cap > 0) {
    cap = std::min(cap, m_cfg.routing.max_tokens_cap);
  }
  d.max_tokens_cap = std::max<std::int64_t>(cap, 1);
  if (m.api == "anthropic") {
    d.breakpoints =
        anthropic_breakpoints(req.shape, req.prompt_tokens, req.messages,
                              m.min_cacheable_tokens, m_cfg.cache);
  } else if (m_cfg.cache.enabled) {
    d.prompt_cache_key = prompt_cache_key(
        req.team.empty() ? req.key_hash : req.team, req.prefix_hash);
  }
  if (d.ttl_ms == 0) {
    d.ttl_ms = m_cfg.routing.ttl_ms;
  }
}

RouteDecision Router::decide(const RouteRequest &req,
                             const BudgetStatus &budget,
                             const StatsTable &stats) const {
  const RoutingParams &rp = m_cfg.routing;
  if (budget.level == BudgetLevel::exceeded) {
    return deny(DenyCode::budget_exceeded, budget.detail, rp.budget_ttl_ms);
  }
  const bool near = budget.level == BudgetLevel::near;

  RequestShape shape{req.prompt_tokens, req.tools, req.images,
                     req.complexity.value_or(rp.default_complexity)};
  const std::size_t classified = classify(m_cfg.classes, shape);

  const Alias *alias = find_alias(req.model);
  std::string explicit_model;
  std::size_t cls_index = classified;
  if (alias != nullptr) {
    explicit_model = alias->model;
    for (std::size_t i = 0; i < m_cfg.classes.size(); ++i) {
      if (m_cfg.classes[i].name == alias->class_name) {
        cls_index = i;
      }
    }
  } else {
    explicit_model = req.model;
  }

  RouteDecision d;
  if (near) {
    d.ttl_ms = rp.budget_ttl_ms;
  }

  if (!explicit_model.empty()) {
    const ModelInfo *m = find_model(explicit_model);
    if (m == nullptr) {
      return deny(DenyCode::model_not_allowed,
                  "model " + explicit_model + " is not in the model table",
                  rp.ttl_ms);
    }
    if (!allowed(req.team, m->name)) {
      return deny(DenyCode::model_not_allowed,
                  "model " + m->name + " is not allowed for team " +
                      (req.team.empty() ? "(none)" : req.team),
                  rp.ttl_ms);
    }
    d.class_name = m_cfg.classes[classified].name;
    const ModelInfo *chosen = m;
    d.reason = "requested model";
    if (!fits(*m, req)) {
      RequestClass larger{"", m->tier, 0, {}, {}, {}};
      auto bigger = candidates(req, larger, m->api, true, stats);
      if (bigger.empty()) {
        return deny(DenyCode::context_length_exceeded,
                    "prompt_tokens + max_tokens = " +
                        std::to_string(req.prompt_tokens + req.max_tokens) +
                        " exceeds the context window of " + m->name + " (" +
                        std::to_string(m->context_window) +
                        ") and of every allowed fallback",
                    rp.ttl_ms);
      }
      chosen = bigger.front().model;
      d.reason = "context_fallback: " + m->name + " context window " +
                 std::to_string(m->context_window) + " too small";
    }
    if (near) {
      auto cheaper =
          candidates(req, m_cfg.classes[classified], chosen->api, true, stats);
      if (!cheaper.empty() && cheaper.front().cost < estimate(*chosen, req)) {
        chosen = cheaper.front().model;
        d.downgraded = true;
        d.reason = "budget_downgrade: " + budget.detail;
      }
    }
    // Fallbacks: the explicit chain, else same-tier models of the API.
    if (!chosen->fallbacks.empty()) {
      for (const std::string &name : chosen->fallbacks) {
        const ModelInfo *f = find_model(name);
        if (f != nullptr && f != chosen && allowed(req.team, name) &&
            fits(*f, req) && d.fallbacks.size() < rp.max_fallbacks) {
          d.fallbacks.push_back({f->upstream, f->name});
        }
      }
    } else {
      RequestClass same{"", chosen->tier, 0, {}, {}, {}};
      for (const Ranked &r : candidates(req, same, chosen->api, true, stats)) {
        if (r.model != chosen && r.model->tier == chosen->tier &&
            d.fallbacks.size() < rp.max_fallbacks) {
          d.fallbacks.push_back({r.model->upstream, r.model->name});
        }
      }
    }
    finish(d, *chosen, req);
    return d;
  }

  // Class routing: cheapest model satisfying the class, adaptive among
  // near-equivalent costs. Near a budget: the request's own class (never
  // above the alias's) and strictly the cheapest model.
  struct Pick {
    std::vector<Ranked> fit; // chosen first
    std::size_t n_equiv = 0;
    DenyCode code = DenyCode::none;
    std::string reason;
  };
  auto pick = [&](const RequestClass &cls, bool cheapest_only) {
    Pick p;
    auto pool = candidates(req, cls, req.api, false, stats);
    if (pool.empty()) {
      p.code = DenyCode::model_not_allowed;
      p.reason = "no allowed model for class " + cls.name +
                 (req.team.empty() ? "" : " and team " + req.team);
      return p;
    }
    for (const Ranked &r : pool) {
      if (fits(*r.model, req)) {
        p.fit.push_back(r);
      }
    }
    if (p.fit.empty()) {
      p.code = DenyCode::context_length_exceeded;
      p.reason = "prompt_tokens + max_tokens = " +
                 std::to_string(req.prompt_tokens + req.max_tokens) +
                 " exceeds the context window of every allowed model";
      return p;
    }
    // fit is sorted by cost; the equivalents are a prefix of it.
    p.n_equiv = 1;
    const double limit =
        static_cast<double>(p.fit.front().cost) * rp.equivalence_cost_ratio;
    while (!cheapest_only && p.n_equiv < p.fit.size() &&
           static_cast<double>(p.fit[p.n_equiv].cost) <= limit) {
      ++p.n_equiv;
    }
    std::stable_sort(
        p.fit.begin(), p.fit.begin() + p.n_equiv,
        [](const Ranked &a, const Ranked &b) { return a.score < b.score; });
    p.reason = "class " + cls.name + ": " +
               (p.n_equiv > 1 ? "best of " + std::to_string(p.n_equiv) +
                                    " equivalent models"
                              : std::string("cheapest allowed model"));
    return p;
  };

  Pick p = pick(m_cfg.classes[cls_index], false);
  if (p.code != DenyCode::none) {
    return deny(p.code, p.reason, rp.ttl_ms);
  }
  d.class_name = m_cfg.classes[cls_index].name;
  if (near) {
    const std::size_t own = std::min(cls_index, classified);
    Pick cheap = pick(m_cfg.classes[own], true);
    if (cheap.code == DenyCode::none &&
        cheap.fit.front().model != p.fit.front().model) {
      p = std::move(cheap);
      d.class_name = m_cfg.classes[own].name;
      d.downgraded = true;
      p.reason = "budget_downgrade: " + budget.detail;
    }
  }
  const ModelInfo *chosen = p.fit.front().model;
  d.reason = p.reason;
  for (std::size_t i = 1; i < p.fit.size(); ++i) {
    if (d.fallbacks.size() < rp.max_fallbacks) {
      d.fallbacks.push_back({p.fit[i].model->upstream, p.fit[i].model->name});
    }
  }
  finish(d, *chosen, req);
  return d;
}

} // namespace llm
