#include "domain/classifier.hpp"

#include <gtest/gtest.h>

using namespace llm;

namespace {
std::vector<RequestClass> classes() {
  return {
      {"small", 1, 4000, {Complexity::low, Complexity::medium}, false, {}},
      {"medium", 2, 64000, {Complexity::low, Complexity::medium}, {}, {}},
      {"large", 3, 0, {}, {}, {}},
  };
}
} // namespace

TEST(Classifier, SmallPlainRequest) {
  EXPECT_EQ(classify(classes(), {1000, false, false, Complexity::low}), 0u);
}

TEST(Classifier, SizeMovesUp) {
  EXPECT_EQ(classify(classes(), {4001, false, false, Complexity::low}), 1u);
  EXPECT_EQ(classify(classes(), {64001, false, false, Complexity::low}), 2u);
}

TEST(Classifier, ToolsExcludedFromSmall) {
  EXPECT_EQ(classify(classes(), {100, true, false, Complexity::low}), 1u);
}

TEST(Classifier, DeclaredHighComplexityGoesLarge) {
  EXPECT_EQ(classify(classes(), {100, false, false, Complexity::high}), 2u);
}

TEST(Classifier, LastClassIsCatchAll) {
  std::vector<RequestClass> only{{"tiny", 1, 10, {}, {}, {}},
                                 {"rest", 1, 10, {}, {}, {}}};
  EXPECT_EQ(classify(only, {1'000'000, true, true, Complexity::high}), 1u);
}

TEST(Classifier, ParsesComplexity) {
  EXPECT_EQ(parse_complexity("high"), Complexity::high);
  EXPECT_FALSE(parse_complexity("extreme"));
}
