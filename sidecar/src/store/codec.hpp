// Text encoding of journal and snapshot entries: a type letter, then
// tab-separated fields with \\, \t and \n escaped.
#pragma once

#include "domain/budgets.hpp"
#include "domain/ledger.hpp"
#include "domain/types.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace llm::codec {

// Entry types.
inline constexpr char k_usage = 'U';      // seq, record
inline constexpr char k_budget_put = 'B'; // budget
inline constexpr char k_budget_del = 'D'; // scope, id
inline constexpr char k_alert_mark = 'A'; // mark key
inline constexpr char k_pushed = 'P';     // redis watermark seq
inline constexpr char k_cell = 'C';       // snapshot: cube cell
inline constexpr char k_id = 'I';         // snapshot: ts, request id
inline constexpr char k_header = 'H';     // snapshot: generation, seqs
inline constexpr char k_end = 'E';        // snapshot: complete

std::vector<std::string_view> split(std::string_view s);
std::string unescape(std::string_view s);

std::string encode_usage(const UsageRecord &r, std::uint64_t seq);
// The same entry appended to out.
void encode_usage(std::string &out, const UsageRecord &r, std::uint64_t seq);
bool decode_usage(std::string_view entry, UsageRecord &r, std::uint64_t &seq);

std::string encode_budget(const Budget &b);
bool decode_budget(std::string_view entry, Budget &b);

std::string encode_budget_delete(Scope s, const std::string &id);
bool decode_budget_delete(std::string_view entry, Scope &s, std::string &id);

std::string encode_cell(const CubeKey &k, const Totals &t);
bool decode_cell(std::string_view entry, CubeKey &k, Totals &t);

std::string encode_simple(char type, std::string_view a);
std::string encode_simple(char type, std::int64_t a, std::string_view b);

bool parse_i64(std::string_view s, std::int64_t &out);

} // namespace llm::codec
