// llm-sidecar: control plane of the ngx_llm gateway.
//
//   llm-sidecar --config /etc/llm/sidecar.json [--check]
//
// SIGTERM/SIGINT: graceful stop (journal flushed, snapshot written).
// SIGHUP: reload the config; a bad new config is logged and ignored.

#include "clients/http.hpp"
#include "config.hpp"
#include "engine.hpp"
#include "handlers.hpp"
#include "log.hpp"
#include "server.hpp"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <pthread.h>
#include <thread>

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: llm-sidecar --config FILE [--check]\n"
               "  --config FILE  JSON configuration (see README.md)\n"
               "  --check        validate the configuration and exit\n");
}

} // namespace

int main(int argc, char **argv) {
  std::string config_path;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--config" || a == "-c") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--check" || a == "-t") {
      check = true;
    } else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      std::fprintf(stderr, "llm-sidecar: unknown argument %s\n", a.c_str());
      usage();
      return 2;
    }
  }
  if (config_path.empty()) {
    usage();
    return 2;
  }

  std::shared_ptr<const llm::Config> cfg;
  try {
    cfg = std::make_shared<const llm::Config>(llm::load_config(config_path));
  } catch (const llm::ConfigError &e) {
    std::fprintf(stderr, "llm-sidecar: %s\n", e.what());
    return 1;
  }
  if (check) {
    std::printf("llm-sidecar: configuration %s is valid (%zu models)\n",
                config_path.c_str(), cfg->router.models.size());
    return 0;
  }

  // Signals are taken synchronously by one thread; every other thread
  // inherits the blocked mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  llm::HttpClient::global_init();

  try {
    llm::Engine engine(cfg);
    engine.start();
    llm::Handlers handlers(engine);
    llm::Server server(handlers, cfg->listen, cfg->threads);

    std::thread signals([&] {
      for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
          continue;
        }
        if (sig == SIGHUP) {
          try {
            auto next = std::make_shared<const llm::Config>(
                llm::load_config(config_path));
            engine.reload(next);
            llm::log_info("reload: configuration reloaded from " + config_path);
          } catch (const llm::ConfigError &e) {
            llm::log_error(std::string("reload: keeping the "
                                       "running configuration: ") +
                           e.what());
          }
          continue;
        }
        llm::log_info(std::string("received ") + strsignal(sig) +
                      ", shutting down");
        server.stop();
        return;
      }
    });
    llm::log_info("ready (" +
                  std::string(engine.redis_mode() ? "redis" : "embedded") +
                  " ledger, " + std::to_string(cfg->threads) + " threads)");
    server.run();
    signals.join();
    engine.stop();
  } catch (const std::exception &e) {
    llm::log_error(e.what());
    return 1;
  }
  return 0;
}
