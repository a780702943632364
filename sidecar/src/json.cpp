#include "json.hpp"

#include <cmath>
#include <cstdio>

namespace llm::json {

void escape(std::string &out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out.push_back(c);
      }
    }
  }
  out.push_back('"');
}

void Writer::separate() {
  if (m_after_key) {
    m_after_key = false;
    return;
  }
  if (!m_first.back()) {
    m_out.push_back(',');
  }
  m_first.back() = false;
}

Writer &Writer::begin_object() {
  separate();
  m_out.push_back('{');
  m_first.push_back(true);
  return *this;
}

Writer &Writer::end_object() {
  m_out.push_back('}');
  m_first.pop_back();
  return *this;
}

Writer &Writer::begin_array() {
  separate();
  m_out.push_back('[');
  m_first.push_back(true);
  return *this;
}

Writer &Writer::end_array() {
  m_out.push_back(']');
  m_first.pop_back();
  return *this;
}

Writer &Writer::key(std::string_view k) {
  separate();
  escape(m_out, k);
  m_out.push_back(':');
  m_after_key = true;
  return *this;
}

Writer &Writer::value(std::string_view s) {
  separate();
  escape(m_out, s);
  return *this;
}

Writer &Writer::value(std::int64_t v) {
  separate();
  m_out += std::to_string(v);
  return *this;
}

Writer &Writer::value(bool v) {
  separate();
  m_out += v ? "true" : "false";
  return *this;
}

Writer &Writer::value_double(double v) {
  separate();
  if (!std::isfinite(v)) {
    m_out += "null";
    return *this;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  m_out += buf;
  return *this;
}

Writer &Writer::null() {
  separate();
  m_out += "null";
  return *this;
}

Obj::Obj(simdjson::dom::element e, std::string path, Errors &errs)
    : m_path(std::move(path)), m_errs(&errs) {
  if (e.get_object().get(m_obj) != simdjson::SUCCESS) {
    errs.add(m_path, "must be an object");
    return;
  }
  m_valid = true;
}

std::string Obj::at(std::string_view key) const {
  std::string p = m_path;
  if (!p.empty()) {
    p += '.';
  }
  p += key;
  return p;
}

std::optional<simdjson::dom::element> Obj::get(std::string_view key) const {
  if (!m_valid) {
    return std::nullopt;
  }
  simdjson::dom::element e;
  if (m_obj.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) {
    return std::nullopt;
  }
  return e;
}

bool Obj::has(std::string_view key) const { return get(key).has_value(); }

std::string Obj::str(std::string_view key, bool required,
                     std::string def) const {
  auto e = get(key);
  if (!e) {
    if (required && m_valid) {
      m_errs->add(at(key), "required");
    }
    return def;
  }
  std::string_view v;
  if (e->get_string().get(v) != simdjson::SUCCESS) {
    m_errs->add(at(key), "must be a string");
    return def;
  }
  return std::string(v);
}

std::int64_t Obj::i64(std::string_view key, bool required, std::int64_t def,
                      std::int64_t min, std::int64_t max) const {
  auto e = get(key);
  if (!e) {
    if (required && m_valid) {
      m_errs->add(at(key), "required");
    }
    return def;
  }
  std::int64_t v = 0;
  std::uint64_t u = 0;
  double d = 0;
  bool ok = false;
  if (e->get_int64().get(v) == simdjson::SUCCESS) {
    ok = true;
  } else if (e->get_uint64().get(u) == simdjson::SUCCESS) {
    ok = false; // beyond int64
  } else if (e->get_double().get(d) == simdjson::SUCCESS &&
             d == std::floor(d) && std::fabs(d) < 9e15) {
    v = static_cast<std::int64_t>(d);
    ok = true;
  }
  if (!ok || v < min || v > max) {
    std::string what;
    if (min == 0 && max == INT64_MAX) {
      what = "must be a non-negative integer";
    } else if (max == INT64_MAX) {
      what = "must be an integer >= " + std::to_string(min);
    } else {
      what = "must be an integer in [" + std::to_string(min) + ", " +
             std::to_string(max) + "]";
    }
    m_errs->add(at(key), what);
    return def;
  }
  return v;
}

bool Obj::boolean(std::string_view key, bool def) const {
  auto e = get(key);
  if (!e) {
    return def;
  }
  bool v = def;
  if (e->get_bool().get(v) != simdjson::SUCCESS) {
    m_errs->add(at(key), "must be true or false");
    return def;
  }
  return v;
}

double Obj::number(std::string_view key, double def, double min,
                   double max) const {
  auto e = get(key);
  if (!e) {
    return def;
  }
  double v = def;
  if (e->get_double().get(v) != simdjson::SUCCESS || v < min || v > max) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "must be a number in [%g, %g]", min, max);
    m_errs->add(at(key), buf);
    return def;
  }
  return v;
}

std::optional<Obj> Obj::obj(std::string_view key, bool required) const {
  auto e = get(key);
  if (!e) {
    if (required && m_valid) {
      m_errs->add(at(key), "required");
    }
    return std::nullopt;
  }
  Obj o(*e, at(key), *m_errs);
  if (!o.valid()) {
    return std::nullopt;
  }
  return o;
}

std::vector<simdjson::dom::element> Obj::arr(std::string_view key,
                                             bool required) const {
  std::vector<simdjson::dom::element> out;
  auto e = get(key);
  if (!e) {
    if (required && m_valid) {
      m_errs->add(at(key), "required");
    }
    return out;
  }
  simdjson::dom::array a;
  if (e->get_array().get(a) != simdjson::SUCCESS) {
    m_errs->add(at(key), "must be an array");
    return out;
  }
  for (simdjson::dom::element x : a) {
    out.push_back(x);
  }
  return out;
}

std::vector<std::string> Obj::strings(std::string_view key) const {
  std::vector<std::string> out;
  auto items = arr(key);
  for (std::size_t i = 0; i < items.size(); ++i) {
    std::string_view v;
    if (items[i].get_string().get(v) != simdjson::SUCCESS) {
      m_errs->add(at(key) + "[" + std::to_string(i) + "]", "must be a string");
      continue;
    }
    out.emplace_back(v);
  }
  return out;
}

std::vector<std::pair<std::string, simdjson::dom::element>>
Obj::members() const {
  std::vector<std::pair<std::string, simdjson::dom::element>> out;
  if (!m_valid) {
    return out;
  }
  for (auto field : m_obj) {
    out.emplace_back(std::string(field.key), field.value);
  }
  return out;
}

} // namespace llm::json
