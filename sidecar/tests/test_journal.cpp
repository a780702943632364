#include "domain/time.hpp"
#include "store/codec.hpp"
#include "store/journal.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include <fcntl.h>
#include <future>
#include <sys/stat.h>
#include <unistd.h>

using namespace llm;

namespace {

std::string temp_dir() {
  static std::vector<std::string> dirs;
  static const int cleanup = std::atexit([] {
    for (const auto &d : dirs) {
      std::filesystem::remove_all(d);
    }
  });
  (void)cleanup;
  char tmpl[] = "/tmp/llm-journal-test.XXXXXX";
  dirs.push_back(::mkdtemp(tmpl));
  return dirs.back();
}

bool append_sync(Journal &j, std::vector<std::string> entries) {
  std::promise<bool> p;
  auto f = p.get_future();
  j.append(std::move(entries), [&p](bool ok) { p.set_value(ok); });
  return f.get();
}

std::vector<std::string> replay(const std::string &dir) {
  Journal j(dir);
  std::vector<std::string> out;
  j.replay([&](std::string_view e) { out.emplace_back(e); });
  return out;
}

} // namespace

TEST(Codec, UsageRoundTripsWithAwkwardStrings) {
  UsageRecord r;
  r.request_id = "req\t1\\x\n";
  r.key_hash = "ab12";
  r.team = "";
  r.model = "auto";
  r.served_model = "gpt-4o-mini";
  r.prompt_tokens = 123;
  r.cached_tokens = 7;
  r.completion_tokens = 9;
  r.status = 200;
  r.ts = 1795341600123;
  r.cost = 42;
  UsageRecord back;
  std::uint64_t seq = 0;
  ASSERT_TRUE(codec::decode_usage(codec::encode_usage(r, 77), back, seq));
  EXPECT_EQ(seq, 77u);
  EXPECT_EQ(back.request_id, r.request_id);
  EXPECT_EQ(back.team, "");
  EXPECT_EQ(back.served_model, "gpt-4o-mini");
  EXPECT_EQ(back.ts, r.ts);
  EXPECT_EQ(back.cost, 42);
  EXPECT_FALSE(codec::decode_usage("U\t1\tx", back, seq));
}

TEST(Codec, BudgetRoundTrips) {
  Budget b{Scope::key,     "k1",          5'000'000,
           Window::days30, {50, 80, 100}, 86400000};
  Budget back;
  ASSERT_TRUE(codec::decode_budget(codec::encode_budget(b), back));
  EXPECT_EQ(back, b);
}

TEST(Journal, AppendIsDurableAndReplaysInOrder) {
  const std::string dir = temp_dir();
  {
    Journal j(dir);
    j.replay([](std::string_view) {});
    j.start();
    EXPECT_TRUE(append_sync(j, {"a", "b"}));
    EXPECT_TRUE(append_sync(j, {"c"}));
    EXPECT_GE(j.stats().fsyncs, 2u);
    EXPECT_EQ(j.stats().entries, 3u);
  }
  EXPECT_EQ(replay(dir), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(Journal, PreFramedBatchesReplayInOrderWithTheOthers) {
  const std::string dir = temp_dir();
  {
    Journal j(dir);
    j.replay([](std::string_view) {});
    j.start();
    std::string frames = "junk before";
    frames.clear();
    for (std::string_view e : {"b", "", "c\td"}) {
      const std::size_t at = Journal::begin_frame(frames);
      frames.append(e);
      Journal::end_frame(frames, at);
    }
    EXPECT_TRUE(append_sync(j, {"a"}));
    std::promise<bool> p1, p2;
    j.append_frames(frames, 3, [&p1](bool ok) { p1.set_value(ok); });
    j.append({"e"}, [&p2](bool ok) { p2.set_value(ok); });
    EXPECT_TRUE(p1.get_future().get());
    EXPECT_TRUE(p2.get_future().get());
    EXPECT_EQ(j.stats().entries, 5u);
  }
  EXPECT_EQ(replay(dir),
            (std::vector<std::string>{"a", "b", "", "c\td", "e"}));
}

TEST(Codec, UsageAppendsToABuffer) {
  UsageRecord r;
  r.request_id = "r1";
  r.served_model = "m";
  r.cost = 5;
  std::string out = "prefix";
  codec::encode_usage(out, r, 9);
  EXPECT_EQ(out, "prefix" + codec::encode_usage(r, 9));
  UsageRecord back;
  std::uint64_t seq = 0;
  ASSERT_TRUE(codec::decode_usage(std::string_view(out).substr(6), back, seq));
  EXPECT_EQ(seq, 9u);
  EXPECT_EQ(back.request_id, "r1");
  EXPECT_EQ(back.cost, 5);
}

TEST(Journal, TornTailIsTruncated) {
  const std::string dir = temp_dir();
  {
    Journal j(dir);
    j.replay([](std::string_view) {});
    j.start();
    ASSERT_TRUE(append_sync(j, {"first", "second"}));
  }
  const std::string path = dir + "/journal.000000000000";
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  // Half a frame, as after a crash mid-write.
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "\x20\x00\x00\x00\x01\x02", 6), 6);
  ::close(fd);
  EXPECT_EQ(replay(dir), (std::vector<std::string>{"first", "second"}));
  struct stat st2 {};
  ::stat(path.c_str(), &st2);
  EXPECT_EQ(st2.st_size, st.st_size);
  // Appending after recovery continues cleanly.
  {
    Journal j(dir);
    j.replay([](std::string_view) {});
    j.start();
    ASSERT_TRUE(append_sync(j, {"third"}));
  }
  EXPECT_EQ(replay(dir),
            (std::vector<std::string>{"first", "second", "third"}));
}

TEST(Journal, SnapshotReplacesOlderJournals) {
  const std::string dir = temp_dir();
  {
    Journal j(dir);
    j.replay([](std::string_view) {});
    j.start();
    ASSERT_TRUE(append_sync(j, {"old1", "old2"}));
    const auto gen = j.rotate();
    ASSERT_TRUE(append_sync(j, {"new1"}));
    std::string err;
    ASSERT_TRUE(j.write_snapshot(gen, {"state"}, err)) << err;
    ASSERT_TRUE(append_sync(j, {"new2"}));
  }
  EXPECT_NE(::access((dir + "/journal.000000000000").c_str(), F_OK), 0);
  auto entries = replay(dir);
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[0], "H\t1");
  EXPECT_EQ(entries[1], "state");
  EXPECT_EQ(entries[2], "E");
  EXPECT_EQ(entries[3], "new1");
  EXPECT_EQ(entries[4], "new2");
}

TEST(Journal, CrashBetweenRotationAndSnapshotReplaysBothJournals) {
  const std::string dir = temp_dir();
  {
    Journal j(dir);
    j.replay([](std::string_view) {});
    j.start();
    ASSERT_TRUE(append_sync(j, {"a"}));
    j.rotate();
    ASSERT_TRUE(append_sync(j, {"b"}));
    // no snapshot written
  }
  EXPECT_EQ(replay(dir), (std::vector<std::string>{"a", "b"}));
}

TEST(Journal, Crc32cKnownValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xe3069283U);
}
