// Webhook alert delivery off the request path: a queue and one worker
// thread posting JSON with libcurl, retrying with exponential backoff.
#pragma once

#include "config.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace llm {

class AlertSender {
public:
  explicit AlertSender(AlertsConfig cfg);
  ~AlertSender();
  AlertSender(const AlertSender &) = delete;
  AlertSender &operator=(const AlertSender &) = delete;

  void set_config(AlertsConfig cfg);
  void enqueue(std::string body);

  std::uint64_t delivered() const { return m_delivered; }
  std::uint64_t failed() const { return m_failed; }
  std::uint64_t retries() const { return m_retries; }
  std::size_t queued() const;

private:
  struct Item {
    std::string body;
    int attempts = 0;
    std::chrono::steady_clock::time_point next;
  };
  void run();

  AlertsConfig m_cfg;
  mutable std::mutex m_mu;
  std::condition_variable m_cv;
  std::deque<Item> m_queue;
  bool m_stop = false;
  std::atomic<std::uint64_t> m_delivered{0};
  std::atomic<std::uint64_t> m_failed{0};
  std::atomic<std::uint64_t> m_retries{0};
  std::thread m_thread;
};

} // namespace llm
