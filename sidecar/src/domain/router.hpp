// Route decisions: aliases, allow-lists, request classes, cost, adaptive
// choice among equivalents, context-window checks, budget downgrade.
#pragma once

#include "domain/classifier.hpp"
#include "domain/prompt_cache.hpp"
#include "domain/types.hpp"

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace llm {

// Observed behaviour of a model, fed from usage records.
struct ModelStats {
  double success = 1.0;    // EWMA of 1 (2xx/3xx) or 0 (429, 5xx, 0)
  double latency_ms = 0.0; // EWMA of TTFT (or duration when no TTFT)
  std::int64_t samples = 0;

  static constexpr double k_alpha = 0.1;
  void observe(int status, std::int64_t latency_ms);
};
using StatsTable = std::unordered_map<std::string, ModelStats>;

struct Alias {
  std::string name;
  std::string model;      // fixed model, or
  std::string class_name; // fixed class; both empty: classify
};

struct RoutingParams {
  std::int64_t ttl_ms = 5000;
  std::int64_t budget_ttl_ms = 1000; // TTL when a budget is involved
  std::size_t max_fallbacks = 2;
  double equivalence_cost_ratio = 1.25;
  double latency_weight = 0.5; // score penalty per second of latency
  std::int64_t assumed_output_tokens = 512;
  std::int64_t max_tokens_cap = 0; // 0: the model's own limit
  Complexity default_complexity = Complexity::medium;
};

struct RouterConfig {
  std::vector<ModelInfo> models;
  std::vector<Alias> aliases;
  std::vector<RequestClass> classes;
  // team -> allowed model patterns ("*" suffix glob); "*" is the default
  // policy for teams not listed. No entry at all: everything allowed.
  std::unordered_map<std::string, std::vector<std::string>> allow;
  RoutingParams routing;
  PromptCacheParams cache;
};

struct RouteRequest {
  std::string key_hash;
  std::string team;
  std::string model;
  std::string api; // openai | anthropic | empty
  std::int64_t prompt_tokens = 0;
  std::int64_t max_tokens = 0;
  bool stream = false;
  bool tools = false;
  bool images = false;
  bool json_mode = false;
  std::optional<Complexity> complexity;
  std::string prefix_hash;
  std::int64_t messages = 0;
  PromptShape shape;
};

enum class BudgetLevel { ok, near, exceeded };

struct BudgetStatus {
  BudgetLevel level = BudgetLevel::ok;
  std::string detail; // e.g. "team t1 budget at 85% of 100.000000 USD"
};

enum class DenyCode {
  none,
  budget_exceeded,
  context_length_exceeded,
  model_not_allowed
};
const char *deny_code_name(DenyCode c);

struct Target {
  std::string upstream;
  std::string model;
  bool operator==(const Target &) const = default;
};

struct RouteDecision {
  bool allow = false;
  DenyCode code = DenyCode::none;
  std::string reason;
  Target target;
  std::vector<Target> fallbacks;
  std::int64_t max_tokens_cap = 0;
  std::vector<std::string> breakpoints;
  std::string prompt_cache_key;
  std::int64_t ttl_ms = 0;
  std::string class_name;
  bool downgraded = false;
};

class Router {
public:
  explicit Router(RouterConfig cfg);

  RouteDecision decide(const RouteRequest &req, const BudgetStatus &budget,
                       const StatsTable &stats) const;

  const ModelInfo *find_model(const std::string &name) const;
  bool allowed(const std::string &team, const std::string &model) const;
  const RouterConfig &config() const { return m_cfg; }

private:
  struct Ranked {
    const ModelInfo *model;
    Micros cost;
    double score;
  };

  const Alias *find_alias(const std::string &name) const;
  std::vector<Ranked> candidates(const RouteRequest &req,
                                 const RequestClass &cls,
                                 const std::string &api, bool need_fit,
                                 const StatsTable &stats) const;
  bool fits(const ModelInfo &m, const RouteRequest &req) const;
  Micros estimate(const ModelInfo &m, const RouteRequest &req) const;
  void finish(RouteDecision &d, const ModelInfo &m,
              const RouteRequest &req) const;

  RouterConfig m_cfg;
  std::unordered_map<std::string, std::size_t> m_by_name;
};

} // namespace llm
