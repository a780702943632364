#include "domain/time.hpp"

#include <gtest/gtest.h>

using namespace llm;

TEST(Time, ParsesIsoAndUnixMillis) {
  EXPECT_EQ(parse_time("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_time("2026-11-22T10:00:00.123Z"), 1795341600123LL);
  EXPECT_EQ(parse_time("2026-11-22T12:00:00.123+02:00"), 1795341600123LL);
  EXPECT_EQ(parse_time("1795341600123"), 1795341600123LL);
  EXPECT_EQ(parse_time("2026-11-22"), 1795305600000LL);
}

TEST(Time, RejectsGarbage) {
  EXPECT_FALSE(parse_time(""));
  EXPECT_FALSE(parse_time("2026-13-01"));
  EXPECT_FALSE(parse_time("2026-11-22T10:00"));
  EXPECT_FALSE(parse_time("2026-11-22T10:00:00Zjunk"));
  EXPECT_FALSE(parse_time("yesterday"));
}

TEST(Time, FormatsRoundTrip) {
  EXPECT_EQ(format_time(1795341600123LL), "2026-11-22T10:00:00.123Z");
  EXPECT_EQ(format_day(day_index(1795341600123LL)), "2026-11-22");
  EXPECT_EQ(day_index(-1), -1);
  EXPECT_EQ(format_day(-1), "1969-12-31");
}
