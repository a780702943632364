#include "config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include <cstdlib>
#include <fstream>

using namespace llm;

namespace {

const char *const k_prices = R"({"models":[
 {"name":"gpt-4o-mini","provider":"openai","input_per_mtok":150000,
  "output_per_mtok":600000,"cache_read_per_mtok":75000,
  "cache_write_per_mtok":0,"context_window":128000,
  "max_output_tokens":16384,"min_cacheable_tokens":1024,
  "source":"https://openai.com/api/pricing/","date":"2025-06-01"},
 {"name":"claude-sonnet-4-5","provider":"anthropic","input_per_mtok":3000000,
  "output_per_mtok":15000000,"cache_read_per_mtok":300000,
  "cache_write_per_mtok":3750000,"context_window":200000,
  "source":"https://www.anthropic.com/pricing","date":"2025-10-01"}]})";

std::string dir() {
  static std::string d = [] {
    char tmpl[] = "/tmp/llm-config-test.XXXXXX";
    std::string p = ::mkdtemp(tmpl);
    std::ofstream(p + "/prices.json") << k_prices;
    static std::string keep;
    keep = p;
    std::atexit([] { std::filesystem::remove_all(keep); });
    return p;
  }();
  return d;
}

std::string base(const std::string &models) {
  return R"({"listen":{"unix":"s.sock","unix_mode":"0600"},
      "data_dir":"data","admin_token":"0123456789abcdef0123",
      "price_table":"prices.json","models":)" +
         models + "}";
}

std::string error_of(const std::string &text) {
  try {
    parse_config(text, dir());
  } catch (const ConfigError &e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST(Config, ValidConfigMergesThePriceTable) {
  Config c =
      parse_config(base(R"([{"name":"gpt-4o-mini","upstream":"openai_pool"},
                 {"name":"claude-sonnet-4-5","upstream":"anthropic_pool",
                  "tier":3}])"),
                   dir());
  ASSERT_EQ(c.router.models.size(), 2u);
  EXPECT_EQ(c.router.models[0].price.input_per_mtok, 150000);
  EXPECT_EQ(c.router.models[1].api, "anthropic");
  EXPECT_EQ(c.router.models[1].tier, 3);
  EXPECT_EQ(c.listen.unix_mode, 0600u);
  EXPECT_EQ(c.listen.unix_path, dir() + "/s.sock");
  EXPECT_EQ(c.data_dir, dir() + "/data");
  EXPECT_EQ(c.prices.at("claude-sonnet-4-5").cache_write_per_mtok, 3750000);
}

TEST(Config, NamesTheBadFieldWithItsIndex) {
  EXPECT_EQ(error_of(base(R"([{"name":"gpt-4o-mini","upstream":"a"},
        {"name":"x","upstream":"b","input_per_mtok":1,"output_per_mtok":1,
         "cache_read_per_mtok":1,"cache_write_per_mtok":1,
         "context_window":1000},
        {"name":"gpt-4o-mini2","upstream":"c","input_per_mtok":-5}])")),
            "config: models[2].input_per_mtok: must be a non-negative "
            "integer");
}

TEST(Config, UnknownModelNeedsPrices) {
  EXPECT_EQ(error_of(base(R"([{"name":"mystery","upstream":"a"}])")),
            "config: models[0].input_per_mtok: required (model mystery is "
            "not in the price table)");
}

TEST(Config, RejectsCommonMistakes) {
  EXPECT_EQ(error_of(base("[]")),
            "config: models: must list at least one model");
  EXPECT_EQ(error_of(R"({"listen":{},"data_dir":"d","admin_token":"x"})"),
            "config: listen: needs \"unix\" or \"tcp\"");
  EXPECT_NE(error_of(base(R"([{"name":"gpt-4o-mini","upstream":"a"}])")
                         .insert(1, R"("lsiten":1,)"))
                .find("config: lsiten: unknown field"),
            std::string::npos);
  EXPECT_NE(error_of("{not json").find("config: invalid JSON"),
            std::string::npos);
  std::string bad_tcp = base(R"([{"name":"gpt-4o-mini","upstream":"a"}])");
  bad_tcp.replace(bad_tcp.find("\"unix_mode\""), 0, R"("tcp":"10.0.0.1:80",)");
  EXPECT_EQ(error_of(bad_tcp),
            "config: listen.tcp: must be a loopback address like "
            "127.0.0.1:18300");
}

TEST(Config, AliasesMustNameSomething) {
  std::string text = base(R"([{"name":"gpt-4o-mini","upstream":"a"}])");
  text.insert(1, R"("aliases":{"fast":{"class":"nope"}},)");
  EXPECT_EQ(error_of(text),
            "config: aliases.fast: names an unknown model or class");
}

TEST(Config, RoutingAndLedgerKnobs) {
  std::string text = base(R"([{"name":"gpt-4o-mini","upstream":"a"}])");
  text.insert(1, R"("routing":{"budget_downgrade_share":0.9,
        "decision_ttl_ms":2500},"ledger":{"dedup_window_hours":0},)");
  EXPECT_EQ(error_of(text),
            "config: ledger.dedup_window_hours: must be an integer in [1, "
            "2160]");
  text = base(R"([{"name":"gpt-4o-mini","upstream":"a"}])");
  text.insert(1, R"("routing":{"budget_downgrade_share":0.9,
        "decision_ttl_ms":2500},)");
  Config c = parse_config(text, dir());
  EXPECT_EQ(c.budget_downgrade_permille, 900);
  EXPECT_EQ(c.router.routing.ttl_ms, 2500);
}

TEST(Config, PriceTableReadThroughTheReader) {
  std::string asked;
  Config c = parse_config(base(R"([{"name":"gpt-4o-mini","upstream":"u"}])"),
                          "/cfg", [&asked](const std::string &path) {
                            asked = path;
                            return std::string(k_prices);
                          });
  EXPECT_EQ(asked, "/cfg/prices.json");
  EXPECT_EQ(c.prices.at("gpt-4o-mini").output_per_mtok, 600000);
  try {
    parse_config(base(R"([{"name":"gpt-4o-mini","upstream":"u"}])"), "/cfg",
                 [](const std::string &) { return std::string("{\"m"); });
    FAIL() << "a broken price table must be refused";
  } catch (const ConfigError &e) {
    EXPECT_EQ(std::string(e.what()).rfind("price table /cfg/prices.json: "
                                          "invalid JSON",
                                          0),
              0u)
        << e.what();
  }
}
