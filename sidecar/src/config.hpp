// Sidecar configuration: one JSON file plus the price table it names.
// Validated as a whole at load; the first problem is reported with the
// path of the offending field.
#pragma once

#include "domain/router.hpp"
#include "log.hpp"

#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace llm {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ListenConfig {
  std::string unix_path;
  unsigned unix_mode = 0660;
  std::string tcp_host;
  unsigned tcp_port = 0; // 0: no TCP listener
};

struct LedgerConfig {
  std::int64_t snapshot_every_records = 500'000;
  std::int64_t snapshot_interval_s = 300;
  std::int64_t dedup_window_hours = 24;
};

struct RedisConfig {
  bool enabled = false;
  std::string host = "127.0.0.1";
  unsigned port = 6379;
  std::int64_t timeout_ms = 200;
  std::string prefix = "llm:";
  std::int64_t sync_interval_ms = 500;
  std::int64_t batch_records = 500;
};

struct AlertsConfig {
  std::string webhook_url; // empty: alerts are only counted and logged
  std::int64_t timeout_ms = 2000;
  std::int64_t max_attempts = 5;
  std::int64_t backoff_ms = 500;
  std::int64_t check_interval_ms = 250;
};

struct Config {
  std::string path;
  ListenConfig listen;
  int threads = 2;
  std::string data_dir;
  std::string admin_token;
  LogLevel log_level = LogLevel::info;
  RouterConfig router;
  int budget_downgrade_permille = 800;
  // Billing prices for every model of the price table and the config.
  std::unordered_map<std::string, ModelPrice> prices;
  LedgerConfig ledger;
  RedisConfig redis;
  AlertsConfig alerts;
};

// Reads and validates; throws ConfigError("config: <field>: <problem>").
Config load_config(const std::string &path);
// The same from text; relative paths resolve against base_dir.
Config parse_config(const std::string &text, const std::string &base_dir);

// Reads a file the config names (the price table); throws ConfigError.
using ConfigReader = std::function<std::string(const std::string &path)>;
// The same, files read through `read` (tests, fuzz/fuzz_sidecar_config).
Config parse_config(const std::string &text, const std::string &base_dir,
                    const ConfigReader &read);

} // namespace llm
