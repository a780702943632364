#include "alerts.hpp"

#include "clients/http.hpp"
#include "log.hpp"

#include <algorithm>

namespace llm {

AlertSender::AlertSender(AlertsConfig cfg) : m_cfg(std::move(cfg)) {
  m_thread = std::thread([this] { run(); });
}

AlertSender::~AlertSender() {
  {
    std::lock_guard lk(m_mu);
    m_stop = true;
  }
  m_cv.notify_all();
  m_thread.join();
  if (!m_queue.empty()) {
    log_warn("alerts: " + std::to_string(m_queue.size()) +
             " alert(s) not delivered at shutdown");
  }
}

void AlertSender::set_config(AlertsConfig cfg) {
  std::lock_guard lk(m_mu);
  m_cfg = std::move(cfg);
}

void AlertSender::enqueue(std::string body) {
  {
    std::lock_guard lk(m_mu);
    m_queue.push_back({std::move(body), 0, std::chrono::steady_clock::now()});
  }
  m_cv.notify_one();
}

std::size_t AlertSender::queued() const {
  std::lock_guard lk(m_mu);
  return m_queue.size();
}

void AlertSender::run() {
  HttpClient http;
  std::unique_lock lk(m_mu);
  while (!m_stop) {
    if (m_queue.empty()) {
      m_cv.wait(lk);
      continue;
    }
    auto due = std::min_element(
        m_queue.begin(), m_queue.end(),
        [](const Item &a, const Item &b) { return a.next < b.next; });
    if (due->next > std::chrono::steady_clock::now()) {
      m_cv.wait_until(lk, due->next);
      continue;
    }
    Item item = std::move(*due);
    m_queue.erase(due);
    const AlertsConfig cfg = m_cfg;
    lk.unlock();

    bool ok = false;
    std::string why;
    if (cfg.webhook_url.empty()) {
      ok = true; // nothing configured: the log line is the alert
      log_info("alert (no webhook_url): " + item.body);
    } else {
      HttpResult r = http.post_json(cfg.webhook_url, item.body, cfg.timeout_ms);
      ok = r.ok();
      why = r.status != 0 ? "HTTP " + std::to_string(r.status) : r.error;
    }
    ++item.attempts;
    lk.lock();
    if (ok) {
      ++m_delivered;
    } else if (item.attempts >= cfg.max_attempts) {
      ++m_failed;
      log_error("alerts: giving up after " + std::to_string(item.attempts) +
                " attempts (" + why + "): " + item.body);
    } else {
      ++m_retries;
      const std::int64_t delay = cfg.backoff_ms
                                 << std::min(item.attempts - 1, 10);
      log_warn("alerts: delivery failed (" + why + "), retry in " +
               std::to_string(delay) + " ms");
      item.next =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(delay);
      m_queue.push_back(std::move(item));
    }
  }
}

} // namespace llm
