// JSON glue: a streaming writer for responses and a path-aware reader over
// simdjson's DOM that records the first error as a value.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llm::json {

void escape(std::string &out, std::string_view s);

class Writer {
public:
  Writer &begin_object();
  Writer &end_object();
  Writer &begin_array();
  Writer &end_array();
  Writer &key(std::string_view k);
  Writer &value(std::string_view s);
  Writer &value(const char *s) { return value(std::string_view(s)); }
  Writer &value(const std::string &s) { return value(std::string_view(s)); }
  Writer &value(std::int64_t v);
  Writer &value(int v) { return value(static_cast<std::int64_t>(v)); }
  Writer &value(bool v);
  Writer &value_double(double v);
  Writer &null();
  // Convenience: key + value.
  template <typename T> Writer &field(std::string_view k, const T &v) {
    key(k);
    return value(v);
  }
  std::string &str() { return m_out; }
  std::string take() { return std::move(m_out); }

private:
  void separate();
  std::string m_out;
  std::vector<bool> m_first{true};
  bool m_after_key = false;
};

// First error wins; "config: models[2].tier: must be an integer >= 1".
struct Errors {
  std::string prefix; // e.g. "config: "
  std::string first;
  bool ok() const { return first.empty(); }
  void add(const std::string &path, const std::string &msg) {
    if (first.empty()) {
      first = prefix + (path.empty() ? msg : path + ": " + msg);
    }
  }
};

class Obj {
public:
  Obj(simdjson::dom::element e, std::string path, Errors &errs);

  bool valid() const { return m_valid; }
  const std::string &path() const { return m_path; }
  std::string at(std::string_view key) const;
  bool has(std::string_view key) const;
  std::optional<simdjson::dom::element> get(std::string_view key) const;

  std::string str(std::string_view key, bool required = false,
                  std::string def = {}) const;
  std::int64_t i64(std::string_view key, bool required = false,
                   std::int64_t def = 0, std::int64_t min = 0,
                   std::int64_t max = INT64_MAX) const;
  bool boolean(std::string_view key, bool def = false) const;
  double number(std::string_view key, double def, double min, double max) const;
  std::optional<Obj> obj(std::string_view key, bool required = false) const;
  std::vector<simdjson::dom::element> arr(std::string_view key,
                                          bool required = false) const;
  std::vector<std::string> strings(std::string_view key) const;
  // Object members in document order.
  std::vector<std::pair<std::string, simdjson::dom::element>> members() const;

  Errors &errors() const { return *m_errs; }

private:
  simdjson::dom::object m_obj;
  std::string m_path;
  Errors *m_errs;
  bool m_valid = false;
};

} // namespace llm::json
