#include "engine.hpp"

#include "domain/pricing.hpp"
#include "domain/time.hpp"
#include "json.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "store/codec.hpp"

#include <algorithm>

namespace llm {

namespace {

constexpr char k_seq_entry = 'S';
constexpr char k_pending_entry = 'Q';
constexpr std::int64_t k_expire_every_ms = 60'000;
constexpr std::int64_t k_alert_mark_ttl_s = 40 * 86400;

// Idempotent batch apply. ARGV: prefix, id ttl, then 12 fields per
// record: id day key team model error prompt cached cache_write
// completion reasoning cost. Returns 1 (applied) or 0 (duplicate) each.
const char *const k_push_script = R"lua(
local p = ARGV[1]
local ttl = tonumber(ARGV[2])
local out = {}
local names = {'err', 'pt', 'ct', 'cwt', 'ot', 'rt', 'cost'}
for i = 3, #ARGV, 12 do
  if redis.call('SET', p .. 'req:' .. ARGV[i], '1', 'NX', 'EX', ttl) then
    local day = ARGV[i + 1]
    local cell = ARGV[i + 2] .. '\t' .. ARGV[i + 3] .. '\t' .. ARGV[i + 4]
    local h = p .. 'cube:' .. day
    redis.call('HINCRBY', h, cell .. '\treq', 1)
    for j = 1, 7 do
      local v = tonumber(ARGV[i + 4 + j])
      if v ~= 0 then
        redis.call('HINCRBY', h, cell .. '\t' .. names[j], v)
      end
    end
    redis.call('SADD', p .. 'days', day)
    local cost = tonumber(ARGV[i + 11])
    redis.call('HINCRBY', p .. 'bud:key:' .. ARGV[i + 2], day, cost)
    redis.call('HINCRBY', p .. 'bud:team:' .. ARGV[i + 3], day, cost)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
)lua";

std::string seq_entry(std::uint64_t seq) {
  return std::string(1, k_seq_entry) + "\t" + std::to_string(seq);
}

} // namespace

std::string Engine::budget_key(Scope s, const std::string &id) {
  return std::string(scope_name(s)) + "|" + id;
}

Engine::Engine(std::shared_ptr<const Config> cfg)
    : m_redis_mode(cfg->redis.enabled), m_cfg(std::move(cfg)),
      m_router(std::make_shared<Router>(m_cfg->router)) {
  set_log_level(m_cfg->log_level);
  m_journal = std::make_unique<Journal>(m_cfg->data_dir);
  const TimeMs t0 = now_ms();
  m_journal->replay([this](std::string_view e) { replay_entry(e); });
  m_ledger.expire_ids(now_ms() - m_cfg->ledger.dedup_window_hours * 3'600'000);
  log_info("ledger: replayed " + std::to_string(m_ledger.total().requests) +
           " records (" + format_usd(m_ledger.total().cost) + " USD) from " +
           m_cfg->data_dir + " in " + std::to_string(now_ms() - t0) + " ms" +
           (m_redis_mode
                ? ", " + std::to_string(m_pending.size()) + " to push to redis"
                : ""));
  if (m_redis_mode) {
    const RedisConfig &r = m_cfg->redis;
    m_redis_push = std::make_unique<RedisClient>(r.host, r.port, r.timeout_ms);
    m_redis_sync = std::make_unique<RedisClient>(r.host, r.port, r.timeout_ms);
    for (const auto &p : m_pending) {
      m_unpushed[budget_key(Scope::key, p.record.key_hash)] += p.record.cost;
      m_unpushed[budget_key(Scope::team, p.record.team)] += p.record.cost;
    }
  }
}

Engine::~Engine() { stop(); }

void Engine::replay_entry(std::string_view e) {
  if (e.empty()) {
    return;
  }
  switch (e[0]) {
  case codec::k_usage:
  case k_pending_entry: {
    UsageRecord r;
    std::uint64_t seq = 0;
    std::string buf(e);
    buf[0] = codec::k_usage;
    if (!codec::decode_usage(buf, r, seq)) {
      log_warn("ledger: skipping an undecodable usage entry");
      return;
    }
    m_seq = std::max(m_seq, seq);
    if (e[0] == codec::k_usage) {
      m_ledger.apply(r);
      m_stats[r.billed_model()].observe(
          r.status, r.ttft_ms > 0 ? r.ttft_ms : r.duration_ms);
      ++m_records_since_snapshot;
    }
    if (m_redis_mode) {
      m_pending.push_back({seq, std::move(r)});
    }
    return;
  }
  case codec::k_pushed: {
    std::int64_t wm = 0;
    if (codec::parse_i64(e.substr(2), wm)) {
      while (!m_pending.empty() &&
             m_pending.front().seq <= static_cast<std::uint64_t>(wm)) {
        m_pending.pop_front();
      }
    }
    return;
  }
  case k_seq_entry: {
    std::int64_t s = 0;
    if (codec::parse_i64(e.substr(2), s)) {
      m_seq = std::max(m_seq, static_cast<std::uint64_t>(s));
    }
    return;
  }
  case codec::k_cell: {
    CubeKey k;
    Totals t;
    if (codec::decode_cell(e, k, t)) {
      m_ledger.restore_cell(k, t);
    }
    return;
  }
  case codec::k_id: {
    auto f = codec::split(e);
    std::int64_t ts = 0;
    if (f.size() == 3 && codec::parse_i64(f[1], ts)) {
      m_ledger.restore_id(codec::unescape(f[2]), ts);
    }
    return;
  }
  case codec::k_budget_put: {
    Budget b;
    if (!m_redis_mode && codec::decode_budget(e, b)) {
      m_budgets[budget_key(b.scope, b.id)] = b;
    }
    return;
  }
  case codec::k_budget_del: {
    Scope s;
    std::string id;
    if (!m_redis_mode && codec::decode_budget_delete(e, s, id)) {
      m_budgets.erase(budget_key(s, id));
    }
    return;
  }
  case codec::k_alert_mark:
    m_alerts.insert(codec::unescape(e.substr(2)));
    return;
  default:
    return; // H, E and unknown future entries
  }
}

void Engine::start() {
  m_journal->start();
  m_started = true;
  m_sender = std::make_unique<AlertSender>(m_cfg->alerts);
  m_maintenance = std::thread([this] { maintenance(); });
  if (m_redis_mode) {
    // First sync before serving, so budgets are known at once.
    sync_from_redis();
    m_pusher = std::thread([this] { push_loop(); });
  }
}

void Engine::stop() {
  {
    std::lock_guard lk(m_wake_mu);
    if (m_stopped) {
      return;
    }
    m_stopped = true;
    m_stopping = true;
  }
  m_wake.notify_all();
  if (m_maintenance.joinable()) {
    m_maintenance.join();
  }
  if (m_pusher.joinable()) {
    m_pusher.join();
  }
  if (m_started) {
    snapshot();
  }
  m_journal->stop();
  m_sender.reset();
  log_info("ledger: flushed and stopped");
}

void Engine::reload(std::shared_ptr<const Config> cfg) {
  const Config &old = *config();
  if (cfg->data_dir != old.data_dir) {
    log_warn("reload: data_dir changes need a restart; keeping " +
             old.data_dir);
  }
  if (cfg->listen.unix_path != old.listen.unix_path ||
      cfg->listen.tcp_port != old.listen.tcp_port) {
    log_warn("reload: listen changes need a restart");
  }
  if (cfg->redis.enabled != old.redis.enabled) {
    log_warn("reload: redis mode changes need a restart");
  }
  auto router = std::make_shared<Router>(cfg->router);
  set_log_level(cfg->log_level);
  if (m_sender) {
    m_sender->set_config(cfg->alerts);
  }
  Lock lk(m_mu);
  m_router = std::move(router);
  m_cfg = std::move(cfg);
}

std::shared_ptr<const Config> Engine::config() const {
  SharedLock lk(m_mu);
  return m_cfg;
}

Micros Engine::cost_of(const UsageRecord &r) const {
  auto it = m_cfg->prices.find(r.billed_model());
  return it == m_cfg->prices.end() ? 0 : usage_cost(it->second, r);
}

Micros Engine::spent_locked(const Budget &b, TimeMs now) const {
  const std::string k = budget_key(b.scope, b.id);
  if (m_redis_mode) {
    auto r = m_remote_spent.find(k);
    auto u = m_unpushed.find(k);
    return (r == m_remote_spent.end() ? 0 : r->second) +
           (u == m_unpushed.end() ? 0 : u->second);
  }
  const WindowRange w = window_range(b.window, b.anchor, now);
  return m_ledger.spent(b.scope, b.id, day_index(w.start), day_index(w.end));
}

BudgetStatus Engine::budget_status_locked(const RouteRequest &req,
                                          TimeMs now) const {
  BudgetStatus st;
  if (m_budgets.empty()) {
    return st;
  }
  const std::pair<Scope, const std::string *> scopes[] = {
      {Scope::key, &req.key_hash}, {Scope::team, &req.team}};
  for (const auto &[scope, id] : scopes) {
    auto it = m_budgets.find(budget_key(scope, *id));
    if (it == m_budgets.end()) {
      continue;
    }
    const Budget &b = it->second;
    const Micros spent = spent_locked(b, now);
    const BudgetLevel level =
        budget_level(spent, b.limit, m_cfg->budget_downgrade_permille);
    if (level > st.level) {
      st.level = level;
      st.detail = std::string(scope_name(scope)) + " " + *id +
                  " budget: " + format_usd(spent) + " of " +
                  format_usd(b.limit) + " USD used (" + window_name(b.window) +
                  " window)";
    }
  }
  return st;
}

RouteDecision Engine::route(const RouteRequest &req) {
  const TimeMs now = now_ms();
  SharedLock lk(m_mu);
  const BudgetStatus bs = budget_status_locked(req, now);
  RouteDecision d = m_router->decide(req, bs, m_stats);
  lk.unlock();
  if (d.allow) {
    ++(d.downgraded ? m_route_downgrade : m_route_allow);
  } else if (d.code == DenyCode::budget_exceeded) {
    ++m_route_deny_budget;
  } else if (d.code == DenyCode::context_length_exceeded) {
    ++m_route_deny_context;
  } else {
    ++m_route_deny_model;
  }
  return d;
}

void Engine::ingest(std::span<UsageRecord> records,
                    std::function<void(IngestResult)> done) {
  IngestResult res;
  // One buffer of journal frames for the whole batch, written as is.
  std::string frames;
  frames.reserve(records.size() * 256);
  std::size_t framed = 0;
  thread_local std::vector<IdDigest> t_digests;
  t_digests.resize(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    t_digests[i] = id_digest(records[i].request_id);
  }
  {
    Lock lk(m_mu);
    for (const IdDigest &d : t_digests) {
      m_ledger.prefetch(d);
    }
    // Price and stats of the model of the previous record: a batch
    // mostly names a few models in runs.
    const std::string *last_model = nullptr;
    const ModelPrice *price = nullptr;
    ModelStats *stats = nullptr;
    for (std::size_t i = 0; i < records.size(); ++i) {
      UsageRecord &r = records[i];
      const std::string &model = r.billed_model();
      if (last_model == nullptr || *last_model != model) {
        auto it = m_cfg->prices.find(model);
        price = it == m_cfg->prices.end() ? nullptr : &it->second;
        stats = &m_stats[model];
        last_model = &model;
      }
      r.cost = price ? usage_cost(*price, r) : 0;
      if (m_ledger.apply(r, t_digests[i]) == Ledger::Result::duplicate) {
        ++res.duplicates;
        continue;
      }
      ++res.accepted;
      stats->observe(r.status, r.ttft_ms > 0 ? r.ttft_ms : r.duration_ms);
      const std::size_t at = Journal::begin_frame(frames);
      codec::encode_usage(frames, r, ++m_seq);
      Journal::end_frame(frames, at);
      ++framed;
      if (m_redis_mode) {
        m_unpushed[budget_key(Scope::key, r.key_hash)] += r.cost;
        m_unpushed[budget_key(Scope::team, r.team)] += r.cost;
        m_pending.push_back({m_seq, std::move(r)});
        // r's strings were moved: the stats and price of the next
        // record are looked up again
        last_model = nullptr;
      }
    }
    m_records_since_snapshot += res.accepted;
    // Appended under the lock: journal order is apply order. A batch of
    // duplicates still waits for the journal, so it is acknowledged
    // only once the first delivery is durable.
    m_journal->append_frames(std::move(frames), framed,
                             [res, done = std::move(done)](bool ok) mutable {
                               res.durable = ok;
                               done(res);
                             });
  }
  m_usage_accepted += res.accepted;
  m_usage_duplicates += res.duplicates;
  if (m_redis_mode && res.accepted > 0) {
    m_wake.notify_all();
  }
}

bool Engine::spend(const SpendQuery &q, std::vector<SpendRow> &rows,
                   std::string &err) {
  if (!m_redis_mode) {
    SharedLock lk(m_mu);
    rows = m_ledger.query(q);
    return true;
  }
  const std::string &p = config()->redis.prefix;
  std::lock_guard lk(m_sync_mu);
  RedisValue days;
  if (!m_redis_sync->command({"SMEMBERS", p + "days"}, days, err)) {
    return false;
  }
  std::vector<std::vector<std::string>> cmds;
  std::vector<std::int64_t> day_ids;
  for (const RedisValue &d : days.elements) {
    std::int64_t day = 0;
    if (codec::parse_i64(d.str, day) && day >= q.from_day && day <= q.to_day) {
      cmds.push_back({"HGETALL", p + "cube:" + d.str});
      day_ids.push_back(day);
    }
  }
  std::vector<RedisValue> replies;
  if (!cmds.empty() && !m_redis_sync->pipeline(cmds, replies, err)) {
    return false;
  }
  Cube cube;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    const auto &el = replies[i].elements;
    for (std::size_t j = 0; j + 1 < el.size(); j += 2) {
      auto f = codec::split(el[j].str);
      std::int64_t v = 0;
      if (f.size() != 4 || !codec::parse_i64(el[j + 1].str, v)) {
        continue;
      }
      Totals &t = cube[CubeKey{day_ids[i], std::string(f[0]), std::string(f[1]),
                               std::string(f[2])}];
      const std::string_view m = f[3];
      if (m == "req") {
        t.requests += v;
      } else if (m == "err") {
        t.errors += v;
      } else if (m == "pt") {
        t.prompt_tokens += v;
      } else if (m == "ct") {
        t.cached_tokens += v;
      } else if (m == "cwt") {
        t.cache_write_tokens += v;
      } else if (m == "ot") {
        t.completion_tokens += v;
      } else if (m == "rt") {
        t.reasoning_tokens += v;
      } else if (m == "cost") {
        t.cost += v;
      }
    }
  }
  rows = query_cube(cube, q);
  return true;
}

std::vector<BudgetView> Engine::budgets() {
  const TimeMs now = now_ms();
  std::vector<BudgetView> out;
  SharedLock lk(m_mu);
  for (const auto &[k, b] : m_budgets) {
    out.push_back(
        {b, spent_locked(b, now), window_range(b.window, b.anchor, now)});
  }
  return out;
}

std::optional<BudgetView> Engine::budget(Scope s, const std::string &id) {
  const TimeMs now = now_ms();
  SharedLock lk(m_mu);
  auto it = m_budgets.find(budget_key(s, id));
  if (it == m_budgets.end()) {
    return std::nullopt;
  }
  return BudgetView{it->second, spent_locked(it->second, now),
                    window_range(it->second.window, it->second.anchor, now)};
}

bool Engine::put_budget(Budget b, std::string &err) {
  const std::string k = budget_key(b.scope, b.id);
  if (m_redis_mode) {
    std::lock_guard lk(m_sync_mu);
    RedisValue v;
    if (!m_redis_sync->command({"HSET", config()->redis.prefix + "budgets", k,
                                codec::encode_budget(b)},
                               v, err)) {
      return false;
    }
    if (v.is_error()) {
      err = "redis: " + v.str;
      return false;
    }
    Lock g(m_mu);
    m_budgets[k] = b;
    return true;
  }
  bool durable = false;
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  {
    Lock lk(m_mu);
    m_budgets[k] = b;
    m_journal->append({codec::encode_budget(b)}, [&](bool ok) {
      std::lock_guard g(mu);
      durable = ok;
      finished = true;
      cv.notify_all();
    });
  }
  std::unique_lock g(mu);
  cv.wait(g, [&] { return finished; });
  if (!durable) {
    err = "ledger: journal write failed";
  }
  return durable;
}

bool Engine::delete_budget(Scope s, const std::string &id, bool &found,
                           std::string &err) {
  const std::string k = budget_key(s, id);
  if (m_redis_mode) {
    std::lock_guard lk(m_sync_mu);
    RedisValue v;
    if (!m_redis_sync->command({"HDEL", config()->redis.prefix + "budgets", k},
                               v, err)) {
      return false;
    }
    found = v.integer == 1;
    Lock g(m_mu);
    m_budgets.erase(k);
    return true;
  }
  bool durable = false;
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  {
    Lock lk(m_mu);
    found = m_budgets.erase(k) > 0;
    if (!found) {
      return true;
    }
    m_journal->append({codec::encode_budget_delete(s, id)}, [&](bool ok) {
      std::lock_guard g(mu);
      durable = ok;
      finished = true;
      cv.notify_all();
    });
  }
  std::unique_lock g(mu);
  cv.wait(g, [&] { return finished; });
  if (!durable) {
    err = "ledger: journal write failed";
  }
  return durable;
}

std::string Engine::alert_body(const Budget &b, const WindowRange &w,
                               Micros spent, int threshold) const {
  json::Writer j;
  j.begin_object()
      .field("type", "budget_threshold")
      .field("scope", scope_name(b.scope))
      .field("id", b.id)
      .field("threshold_percent", threshold)
      .field("spent_usd_micros", spent)
      .field("limit_usd_micros", b.limit)
      .field("window", window_name(b.window))
      .field("window_start", format_time(w.start))
      .field("window_end", format_time(w.end))
      .field("ts", format_time(now_ms()))
      .end_object();
  return j.take();
}

void Engine::check_alerts() {
  struct Due {
    Budget budget;
    WindowRange window;
    Micros spent;
    std::vector<int> thresholds;
  };
  std::vector<Due> due;
  const TimeMs now = now_ms();
  {
    SharedLock lk(m_mu);
    for (const auto &[k, b] : m_budgets) {
      const WindowRange w = window_range(b.window, b.anchor, now);
      const Micros spent = spent_locked(b, now);
      auto th = m_alerts.due(b, w.start, spent);
      if (!th.empty()) {
        due.push_back({b, w, spent, std::move(th)});
      }
    }
  }
  for (const Due &d : due) {
    for (int t : d.thresholds) {
      const std::string mark =
          AlertTracker::mark_key(d.budget, d.window.start, t);
      bool fire = false;
      if (m_redis_mode) {
        // One sidecar wins the mark; the others just remember it.
        std::string err;
        RedisValue v;
        std::lock_guard lk(m_sync_mu);
        if (!m_redis_sync->command(
                {"SET", config()->redis.prefix + "alert:" + mark, "1", "NX",
                 "EX", std::to_string(k_alert_mark_ttl_s)},
                v, err)) {
          continue; // Redis down: decide on a later tick
        }
        fire = v.type == RedisValue::Type::status;
        Lock g(m_mu);
        m_alerts.insert(mark);
      } else {
        Lock g(m_mu);
        fire = m_alerts.insert(mark);
        if (fire) {
          m_journal->append({codec::encode_simple(codec::k_alert_mark, mark)},
                            nullptr);
        }
      }
      if (fire) {
        ++m_alerts_fired;
        log_info("alert: " + std::string(scope_name(d.budget.scope)) + " " +
                 d.budget.id + " reached " + std::to_string(t) + "% of its " +
                 window_name(d.budget.window) + " budget");
        m_sender->enqueue(alert_body(d.budget, d.window, d.spent, t));
      }
    }
  }
}

void Engine::maintenance() {
  TimeMs last_sync = now_ms();
  TimeMs last_expire = now_ms();
  TimeMs last_snapshot = now_ms();
  for (;;) {
    const auto cfg = config();
    {
      std::unique_lock lk(m_wake_mu);
      m_wake.wait_for(lk,
                      std::chrono::milliseconds(cfg->alerts.check_interval_ms),
                      [&] { return m_stopping; });
      if (m_stopping) {
        return;
      }
    }
    const TimeMs now = now_ms();
    if (m_redis_mode && now - last_sync >= cfg->redis.sync_interval_ms) {
      sync_from_redis();
      last_sync = now;
    }
    check_alerts();
    if (now - last_expire >= k_expire_every_ms) {
      Lock lk(m_mu);
      m_ledger.expire_ids(now - cfg->ledger.dedup_window_hours * 3'600'000);
      m_alerts.prune(now);
      last_expire = now;
    }
    std::uint64_t since;
    {
      SharedLock lk(m_mu);
      since = m_records_since_snapshot;
    }
    if (since >=
            static_cast<std::uint64_t>(cfg->ledger.snapshot_every_records) ||
        (since > 0 &&
         now - last_snapshot >= cfg->ledger.snapshot_interval_s * 1000)) {
      snapshot();
      last_snapshot = now;
    }
  }
}

void Engine::snapshot() {
  std::vector<std::string> entries;
  std::uint64_t gen;
  {
    Lock lk(m_mu);
    gen = m_journal->rotate();
    entries.reserve(m_ledger.cube().size() + m_ledger.remembered_ids() +
                    m_pending.size() + 16);
    entries.push_back(seq_entry(m_seq));
    for (const auto &[k, t] : m_ledger.cube()) {
      entries.push_back(codec::encode_cell(k, t));
    }
    for (const auto &[ts, id] : m_ledger.id_entries()) {
      entries.push_back(codec::encode_simple(codec::k_id, ts, id));
    }
    if (!m_redis_mode) {
      for (const auto &[k, b] : m_budgets) {
        entries.push_back(codec::encode_budget(b));
      }
    }
    for (const std::string &m : m_alerts.marks()) {
      entries.push_back(codec::encode_simple(codec::k_alert_mark, m));
    }
    for (const Pending &p : m_pending) {
      std::string e = codec::encode_usage(p.record, p.seq);
      e[0] = k_pending_entry;
      entries.push_back(std::move(e));
    }
    m_records_since_snapshot = 0;
  }
  std::string err;
  if (!m_journal->write_snapshot(gen, entries, err)) {
    log_error("ledger: snapshot failed: " + err);
    return;
  }
  ++m_snapshots;
  log_debug("ledger: snapshot " + std::to_string(gen) + " with " +
            std::to_string(entries.size()) + " entries");
}

void Engine::push_loop() {
  bool was_up = true;
  while (true) {
    bool empty;
    {
      SharedLock lk(m_mu);
      empty = m_pending.empty();
    }
    const auto cfg = config();
    if (empty) {
      std::unique_lock lk(m_wake_mu);
      if (m_stopping) {
        return;
      }
      m_wake.wait_for(lk,
                      std::chrono::milliseconds(cfg->redis.sync_interval_ms));
      continue;
    }
    if (push_batch()) {
      if (!was_up) {
        log_info("redis: reachable again, pushing the backlog");
      }
      was_up = true;
      continue;
    }
    was_up = false;
    std::unique_lock lk(m_wake_mu);
    if (m_stopping) {
      return;
    }
    m_wake.wait_for(lk, std::chrono::milliseconds(std::min<std::int64_t>(
                            cfg->redis.sync_interval_ms, 1000)));
  }
}

bool Engine::push_batch() {
  const auto cfg = config();
  std::vector<Pending> batch;
  {
    SharedLock lk(m_mu);
    const std::size_t n = std::min<std::size_t>(
        m_pending.size(), static_cast<std::size_t>(cfg->redis.batch_records));
    batch.assign(m_pending.begin(), m_pending.begin() + n);
  }
  std::vector<std::string> argv{
      "EVAL", k_push_script, "0", cfg->redis.prefix,
      std::to_string(cfg->ledger.dedup_window_hours * 3600)};
  argv.reserve(5 + batch.size() * 12);
  for (const Pending &p : batch) {
    const UsageRecord &r = p.record;
    argv.push_back(r.request_id);
    argv.push_back(std::to_string(day_index(r.ts)));
    argv.push_back(r.key_hash);
    argv.push_back(r.team);
    argv.push_back(r.billed_model());
    argv.push_back(r.status >= 200 && r.status < 400 ? "0" : "1");
    for (std::int64_t v :
         {r.prompt_tokens, r.cached_tokens, r.cache_write_tokens,
          r.completion_tokens, r.reasoning_tokens, r.cost}) {
      argv.push_back(std::to_string(v));
    }
  }
  RedisValue reply;
  std::string err;
  if (!m_redis_push->command(argv, reply, err) || reply.is_error() ||
      reply.elements.size() != batch.size()) {
    if (m_redis_up.exchange(false) || m_push_errors == 0) {
      log_warn("redis: push failed, records stay in the local journal "
               "and are retried: " +
               (err.empty() ? reply.str : err));
    }
    ++m_push_errors;
    return false;
  }
  m_redis_up = true;
  Lock lk(m_mu);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const UsageRecord &r = batch[i].record;
    for (const std::string &k : {budget_key(Scope::key, r.key_hash),
                                 budget_key(Scope::team, r.team)}) {
      m_unpushed[k] -= r.cost;
      if (reply.elements[i].integer == 1 && m_budgets.count(k)) {
        m_remote_spent[k] += r.cost;
      }
    }
    m_pending.pop_front();
  }
  m_journal->append(
      {codec::encode_simple(codec::k_pushed, std::to_string(batch.back().seq))},
      nullptr);
  m_pushed += batch.size();
  return true;
}

bool Engine::sync_from_redis() {
  const auto cfg = config();
  const std::string &p = cfg->redis.prefix;
  std::string err;
  std::lock_guard lk(m_sync_mu);
  RedisValue all;
  if (!m_redis_sync->command({"HGETALL", p + "budgets"}, all, err) ||
      all.is_error()) {
    if (m_redis_up.exchange(false)) {
      log_warn("redis: sync failed: " + (err.empty() ? all.str : err));
    }
    return false;
  }
  std::map<std::string, Budget> budgets;
  std::vector<std::vector<std::string>> cmds;
  for (std::size_t i = 0; i + 1 < all.elements.size(); i += 2) {
    Budget b;
    if (codec::decode_budget(all.elements[i + 1].str, b)) {
      cmds.push_back(
          {"HGETALL", p + "bud:" + scope_name(b.scope) + ":" + b.id});
      budgets[budget_key(b.scope, b.id)] = b;
    }
  }
  std::vector<RedisValue> replies;
  if (!cmds.empty() && !m_redis_sync->pipeline(cmds, replies, err)) {
    m_redis_up = false;
    return false;
  }
  const TimeMs now = now_ms();
  std::map<std::string, Micros> spent;
  std::size_t i = 0;
  for (const auto &[k, b] : budgets) {
    const WindowRange w = window_range(b.window, b.anchor, now);
    const std::int64_t from = day_index(w.start), to = day_index(w.end);
    Micros sum = 0;
    const auto &el = replies[i++].elements;
    for (std::size_t j = 0; j + 1 < el.size(); j += 2) {
      std::int64_t day = 0, v = 0;
      if (codec::parse_i64(el[j].str, day) &&
          codec::parse_i64(el[j + 1].str, v) && day >= from && day < to) {
        sum += v;
      }
    }
    spent[k] = sum;
  }
  Lock g(m_mu);
  m_budgets = std::move(budgets);
  m_remote_spent = std::move(spent);
  m_redis_up = true;
  return true;
}

bool Engine::wait_pushed(std::int64_t timeout_ms) {
  const TimeMs deadline = now_ms() + timeout_ms;
  while (now_ms() < deadline) {
    {
      SharedLock lk(m_mu);
      if (m_pending.empty()) {
        return true;
      }
    }
    m_wake.notify_all();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

bool Engine::healthy(std::string &why) const {
  if (m_journal->stats().failed) {
    why = "journal write failed; restart after fixing the disk";
    return false;
  }
  return true;
}

std::string Engine::metrics() {
  PromWriter w;
  std::map<std::pair<std::string, std::string>, Totals> by_team_model;
  std::vector<BudgetView> bv = budgets();
  std::size_t pending;
  {
    SharedLock lk(m_mu);
    for (const auto &[k, t] : m_ledger.cube()) {
      by_team_model[{k.team, k.model}].add(t);
    }
    pending = m_pending.size();
  }
  w.family("llm_sidecar_spend_usd_total", "counter",
           "Spend in USD by team and served model (ingested here).");
  for (const auto &[tm, t] : by_team_model) {
    w.sample("llm_sidecar_spend_usd_total",
             {{"team", tm.first}, {"model", tm.second}}, format_usd(t.cost));
  }
  w.family("llm_sidecar_requests_total", "counter",
           "Usage records ingested by team and served model.");
  for (const auto &[tm, t] : by_team_model) {
    w.sample("llm_sidecar_requests_total",
             {{"team", tm.first}, {"model", tm.second}}, t.requests);
  }
  w.family("llm_sidecar_prompt_tokens_total", "counter",
           "Prompt tokens by team and served model.");
  for (const auto &[tm, t] : by_team_model) {
    w.sample("llm_sidecar_prompt_tokens_total",
             {{"team", tm.first}, {"model", tm.second}}, t.prompt_tokens);
  }
  w.family("llm_sidecar_cached_tokens_total", "counter",
           "Prompt tokens read from the provider's prompt cache.");
  for (const auto &[tm, t] : by_team_model) {
    w.sample("llm_sidecar_cached_tokens_total",
             {{"team", tm.first}, {"model", tm.second}}, t.cached_tokens);
  }
  w.family("llm_sidecar_completion_tokens_total", "counter",
           "Completion tokens by team and served model.");
  for (const auto &[tm, t] : by_team_model) {
    w.sample("llm_sidecar_completion_tokens_total",
             {{"team", tm.first}, {"model", tm.second}}, t.completion_tokens);
  }
  w.family("llm_sidecar_budget_limit_usd", "gauge",
           "Budget limit in USD for the current window.");
  for (const auto &b : bv) {
    w.sample("llm_sidecar_budget_limit_usd",
             {{"scope", scope_name(b.budget.scope)},
              {"id", b.budget.id},
              {"window", window_name(b.budget.window)}},
             format_usd(b.budget.limit));
  }
  w.family("llm_sidecar_budget_remaining_usd", "gauge",
           "Budget left in USD in the current window.");
  for (const auto &b : bv) {
    w.sample("llm_sidecar_budget_remaining_usd",
             {{"scope", scope_name(b.budget.scope)},
              {"id", b.budget.id},
              {"window", window_name(b.budget.window)}},
             format_usd(std::max<Micros>(b.budget.limit - b.spent, 0)));
  }
  w.family("llm_sidecar_route_decisions_total", "counter",
           "Route decisions by outcome.");
  const std::pair<const char *, std::uint64_t> outcomes[] = {
      {"allow", m_route_allow},
      {"downgrade", m_route_downgrade},
      {"deny_budget", m_route_deny_budget},
      {"deny_context", m_route_deny_context},
      {"deny_model", m_route_deny_model}};
  for (const auto &[o, v] : outcomes) {
    w.sample("llm_sidecar_route_decisions_total", {{"outcome", o}},
             static_cast<std::int64_t>(v));
  }
  w.family("llm_sidecar_usage_records_total", "counter",
           "Usage records received, by result.");
  w.sample("llm_sidecar_usage_records_total", {{"result", "accepted"}},
           static_cast<std::int64_t>(m_usage_accepted));
  w.sample("llm_sidecar_usage_records_total", {{"result", "duplicate"}},
           static_cast<std::int64_t>(m_usage_duplicates));
  const Journal::Stats js = m_journal->stats();
  w.family("llm_sidecar_journal_size_bytes", "gauge",
           "Size of the current journal file.");
  w.sample("llm_sidecar_journal_size_bytes", {},
           static_cast<std::int64_t>(js.bytes));
  w.family("llm_sidecar_journal_queued_entries", "gauge",
           "Entries waiting for the journal writer (ledger lag).");
  w.sample("llm_sidecar_journal_queued_entries", {},
           static_cast<std::int64_t>(js.queued));
  w.family("llm_sidecar_journal_fsyncs_total", "counter",
           "Journal fdatasync calls (one per group commit).");
  w.sample("llm_sidecar_journal_fsyncs_total", {},
           static_cast<std::int64_t>(js.fsyncs));
  w.family("llm_sidecar_journal_fsync_seconds_total", "counter",
           "Time spent in journal fdatasync.");
  w.sample_double("llm_sidecar_journal_fsync_seconds_total", {},
                  static_cast<double>(js.fsync_ns) / 1e9);
  w.family("llm_sidecar_snapshots_total", "counter",
           "Ledger snapshots written.");
  w.sample("llm_sidecar_snapshots_total", {},
           static_cast<std::int64_t>(m_snapshots));
  w.family("llm_sidecar_redis_pending_records", "gauge",
           "Journaled records not yet pushed to Redis.");
  w.sample("llm_sidecar_redis_pending_records", {},
           static_cast<std::int64_t>(pending));
  w.family("llm_sidecar_redis_up", "gauge",
           "1 when the last Redis call succeeded (Redis mode).");
  w.sample("llm_sidecar_redis_up", {},
           static_cast<std::int64_t>(m_redis_mode && m_redis_up ? 1 : 0));
  w.family("llm_sidecar_alerts_total", "counter",
           "Budget alerts by delivery result.");
  w.sample("llm_sidecar_alerts_total", {{"result", "fired"}},
           static_cast<std::int64_t>(m_alerts_fired));
  if (m_sender) {
    w.sample("llm_sidecar_alerts_total", {{"result", "delivered"}},
             static_cast<std::int64_t>(m_sender->delivered()));
    w.sample("llm_sidecar_alerts_total", {{"result", "failed"}},
             static_cast<std::int64_t>(m_sender->failed()));
    w.sample("llm_sidecar_alerts_total", {{"result", "retried"}},
             static_cast<std::int64_t>(m_sender->retries()));
  }
  return std::move(w.str());
}

} // namespace llm
