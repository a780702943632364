// llm-sidecar-bench: route decisions/s, usage records/s ingested (parse +
// ledger + durable journal), and the journal's fsync cost. Runs the real
// handlers in-process on one thread (plus the journal writer).
//
//   llm-sidecar-bench [--config FILE] [--seconds N]

#include "config.hpp"
#include "engine.hpp"
#include "handlers.hpp"
#include "store/journal.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>

using namespace llm;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string usage_batch(int batch, int n) {
  std::string s = "{\"records\":[";
  for (int i = 0; i < n; ++i) {
    char buf[512];
    std::snprintf(
        buf, sizeof buf,
        "%s{\"request_id\":\"bench-%d-%d\",\"key_hash\":\"k%d\","
        "\"team\":\"t%d\",\"model\":\"auto\",\"served_model\":"
        "\"gpt-4o-mini\",\"upstream\":\"openai_pool\",\"prompt_tokens\":"
        "1234,\"cached_tokens\":512,\"cache_write_tokens\":0,"
        "\"completion_tokens\":256,\"reasoning_tokens\":0,"
        "\"usage_source\":\"upstream\",\"status\":200,\"ttft_ms\":180,"
        "\"duration_ms\":2100,\"cache_status\":\"MISS\","
        "\"ts\":\"2026-11-22T10:00:00.123Z\"}",
        i ? "," : "", batch, i, i % 50, i % 7);
    s += buf;
  }
  return s + "]}";
}

} // namespace

int main(int argc, char **argv) {
  std::string config_path;
  double secs = 2.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--config") {
      config_path = argv[i + 1];
    } else if (a == "--seconds") {
      secs = std::atof(argv[i + 1]);
    }
  }
  if (config_path.empty()) {
    config_path = std::string(LLM_SOURCE_DIR) + "/../conf/sidecar/sidecar.json";
  }
  char tmpl[] = "/tmp/llm-sidecar-bench.XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  Config cfg = load_config(config_path);
  cfg.data_dir = dir + "/data";
  cfg.log_level = LogLevel::warn;
  cfg.redis.enabled = false;
  cfg.alerts.webhook_url.clear();
  auto shared = std::make_shared<const Config>(cfg);
  Engine engine(shared);
  engine.start();
  Handlers h(engine);

  // 1. Route decisions: JSON in, decision, JSON out.
  HttpRequest route;
  route.method = "POST";
  route.path = "/v1/route";
  route.body =
      R"({"key_hash":"ab12cd34","team":"t1","model":"auto","prompt_tokens":1234,)"
      R"("max_tokens":256,"stream":true,"features":{"tools":true,"images":false,)"
      R"("json_mode":false},"prefix_hash":"9f86d081884c7d65","messages":3,)"
      R"("api":"openai"})";
  std::uint64_t n = 0;
  auto t0 = Clock::now();
  std::size_t sink = 0;
  while (seconds_since(t0) < secs) {
    for (int i = 0; i < 1000; ++i) {
      sink += h.route(route).body.size();
    }
    n += 1000;
  }
  const double route_rate = n / seconds_since(t0);

  // 2. Usage ingestion, batches of 1000, each acknowledged after fsync.
  const int k_batch = 1000;
  std::vector<std::string> batches;
  for (int b = 0; b < 400; ++b) {
    batches.push_back(usage_batch(b, k_batch));
  }
  std::uint64_t records = 0;
  t0 = Clock::now();
  std::size_t b = 0;
  while (b < batches.size() && (b < 20 || seconds_since(t0) < secs)) {
    HttpRequest req;
    req.method = "POST";
    req.path = "/v1/usage";
    req.body = batches[b++];
    std::promise<HttpResponse> p;
    auto f = p.get_future();
    h.usage(req, [&p](HttpResponse r) { p.set_value(std::move(r)); });
    HttpResponse r = f.get();
    if (r.status != 200) {
      std::fprintf(stderr, "usage failed: %s\n", r.body.c_str());
      return 1;
    }
    records += k_batch;
  }
  const double usage_rate = records / seconds_since(t0);

  // 3. Journal durability cost: one small entry, wait for fdatasync.
  Journal j(dir + "/fsync");
  j.replay([](std::string_view) {});
  j.start();
  const int k_syncs = 200;
  t0 = Clock::now();
  for (int i = 0; i < k_syncs; ++i) {
    std::promise<bool> p;
    auto f = p.get_future();
    j.append({std::string(200, 'x')}, [&p](bool ok) { p.set_value(ok); });
    f.get();
  }
  const double fsync_us = seconds_since(t0) * 1e6 / k_syncs;
  j.stop();
  engine.stop();

  std::printf("route decisions:      %10.0f /s  (parse + decide + "
              "serialize, 1 thread)\n",
              route_rate);
  std::printf("usage records:        %10.0f /s  (batches of %d, parse + "
              "price + ledger + journal, acked after fdatasync)\n",
              usage_rate, k_batch);
  std::printf("journal commit:       %10.1f us  (one entry appended and "
              "fdatasync'ed, mean of %d)\n",
              fsync_us, k_syncs);
  std::filesystem::remove_all(dir);
  return sink == 0;
}
