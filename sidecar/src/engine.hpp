// The sidecar's state and services: router, ledger, budgets, journal,
// Redis sync, alerts. Handlers call it; it owns every background thread.
//
// Ledger modes:
//  embedded  records are applied in memory, journaled, acknowledged after
//            fdatasync; budgets and alert marks are journaled too.
//  redis     the same local journal (durability and outage buffer), plus a
//            pusher thread that moves journaled records into Redis with an
//            idempotent Lua script (SET NX per request id + HINCRBY). Spend
//            reports, budgets and alert marks live in Redis and are shared
//            by every sidecar; route decisions use budget spend synced
//            every sync_interval_ms. Redis down: usage is still accepted
//            (journaled, pushed when Redis returns), spend and budget
//            admin answer 503.
#pragma once

#include "alerts.hpp"
#include "clients/redis.hpp"
#include "config.hpp"
#include "domain/budgets.hpp"
#include "domain/ledger.hpp"
#include "domain/router.hpp"
#include "store/journal.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <thread>

namespace llm {

struct BudgetView {
  Budget budget;
  Micros spent = 0;
  WindowRange window{};
};

struct IngestResult {
  std::size_t accepted = 0;
  std::size_t duplicates = 0;
  bool durable = false;
};

class Engine {
public:
  // Opens the data directory and replays the journal. Throws at startup.
  explicit Engine(std::shared_ptr<const Config> cfg);
  ~Engine();

  void start();
  // Final snapshot and journal flush; idempotent.
  void stop();

  // SIGHUP: routing, prices, budgets policy, alerts, log level. Listen
  // addresses, data_dir and redis need a restart.
  void reload(std::shared_ptr<const Config> cfg);
  std::shared_ptr<const Config> config() const;

  RouteDecision route(const RouteRequest &req);

  // Records must be validated. done runs once they are durable (on the
  // journal thread, or inline when nothing needs writing).
  // Records are read, and moved from in redis mode.
  void ingest(std::span<UsageRecord> records,
              std::function<void(IngestResult)> done);
  Micros cost_of(const UsageRecord &r) const;

  // false + err when the shared ledger (Redis) is unavailable.
  bool spend(const SpendQuery &q, std::vector<SpendRow> &rows,
             std::string &err);
  std::vector<BudgetView> budgets();
  std::optional<BudgetView> budget(Scope s, const std::string &id);
  bool put_budget(Budget b, std::string &err);
  // found=false when no such budget.
  bool delete_budget(Scope s, const std::string &id, bool &found,
                     std::string &err);

  std::string metrics();
  bool redis_mode() const { return m_redis_mode; }
  bool healthy(std::string &why) const;

  // For tests and the bench: wait until every record is pushed to Redis
  // (or the timeout passes).
  bool wait_pushed(std::int64_t timeout_ms);

private:
  using Lock = std::unique_lock<std::shared_mutex>;
  using SharedLock = std::shared_lock<std::shared_mutex>;

  static std::string budget_key(Scope s, const std::string &id);
  void replay_entry(std::string_view e);
  Micros spent_locked(const Budget &b, TimeMs now) const;
  BudgetStatus budget_status_locked(const RouteRequest &req, TimeMs now) const;
  void maintenance();
  void check_alerts();
  void snapshot();
  void push_loop();
  bool push_batch();
  bool sync_from_redis();
  std::string alert_body(const Budget &b, const WindowRange &w, Micros spent,
                         int threshold) const;

  bool m_redis_mode = false;
  std::shared_ptr<const Config> m_cfg;
  std::shared_ptr<const Router> m_router;

  mutable std::shared_mutex m_mu; // everything below, but the atomics
  Ledger m_ledger;
  StatsTable m_stats;
  std::map<std::string, Budget> m_budgets; // "scope|id"
  AlertTracker m_alerts;
  std::uint64_t m_seq = 0; // last journaled usage sequence number
  std::uint64_t m_records_since_snapshot = 0;

  // Redis mode.
  struct Pending {
    std::uint64_t seq;
    UsageRecord record;
  };
  std::deque<Pending> m_pending;                // journaled, not pushed
  std::map<std::string, Micros> m_unpushed;     // "scope|id" -> cost
  std::map<std::string, Micros> m_remote_spent; // "scope|id" -> window
  std::unique_ptr<RedisClient> m_redis_push;    // pusher thread only
  std::unique_ptr<RedisClient> m_redis_sync;    // maintenance + admin
  std::mutex m_sync_mu;                         // guards m_redis_sync
  std::atomic<bool> m_redis_up{false};
  std::atomic<std::uint64_t> m_pushed{0};
  std::atomic<std::uint64_t> m_push_errors{0};

  std::unique_ptr<Journal> m_journal;
  std::unique_ptr<AlertSender> m_sender;

  std::mutex m_wake_mu;
  std::condition_variable m_wake;
  bool m_stopping = false;
  bool m_stopped = false;
  bool m_started = false;
  std::thread m_maintenance;
  std::thread m_pusher;

  std::atomic<std::uint64_t> m_route_allow{0};
  std::atomic<std::uint64_t> m_route_downgrade{0};
  std::atomic<std::uint64_t> m_route_deny_budget{0};
  std::atomic<std::uint64_t> m_route_deny_context{0};
  std::atomic<std::uint64_t> m_route_deny_model{0};
  std::atomic<std::uint64_t> m_usage_accepted{0};
  std::atomic<std::uint64_t> m_usage_duplicates{0};
  std::atomic<std::uint64_t> m_alerts_fired{0};
  std::atomic<std::uint64_t> m_snapshots{0};
};

} // namespace llm
