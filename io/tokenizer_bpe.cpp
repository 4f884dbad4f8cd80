#include "io/tokenizer_bpe.h"

#include <algorithm>
#include <array>
#include <queue>

#include "engine/error.h"
#include "io/unicode.h"

namespace arq::io {

namespace {

// GPT-2 table: printable bytes map to themselves, the other 68 to U+0100.. in byte order.
struct ByteTable {
  std::array<char32_t, 256> to_cp{};
  std::array<std::string, 256> to_utf8;
  std::unordered_map<char32_t, uint8_t> from_cp;
  ByteTable() {
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_cp[b] = keep ? static_cast<char32_t>(b) : next++;
      unicode::utf8_append(to_utf8[b], to_cp[b]);
      from_cp[to_cp[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}

bool is_space_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_word_byte(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_' || u >= 0x80;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

std::string bpe_bytes_to_unicode(std::string_view bytes) {
  const ByteTable& t = byte_table();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.to_utf8[static_cast<unsigned char>(c)];
  return out;
}

std::string bpe_unicode_to_bytes(std::string_view text) {
  const ByteTable& t = byte_table();
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : unicode::utf8_decode(text)) {
    auto it = t.from_cp.find(cp);
    if (it != t.from_cp.end()) out.push_back(static_cast<char>(it->second));
    else unicode::utf8_append(out, cp);
  }
  return out;
}

BpeTokenizer::BpeTokenizer(BpeVocab v, std::string source)
    : source_(std::move(source)), pre_(std::move(v.pre)), nfc_(v.nfc), ignore_merges_(v.ignore_merges) {
  id_to_token_ = std::move(v.tokens);
  for (const BpeAddedToken& a : v.added) {
    ARQ_CHECK(a.id >= 0, IoError, source_, ": added token \"", a.content, "\" has a negative id ", a.id);
    ARQ_CHECK(!a.content.empty(), IoError, source_, ": added token ", a.id, " has empty content");
    if (static_cast<size_t>(a.id) >= id_to_token_.size()) id_to_token_.resize(static_cast<size_t>(a.id) + 1);
  }
  token_to_id_.reserve(id_to_token_.size() * 2);
  for (size_t i = 0; i < id_to_token_.size(); ++i) {
    if (!id_to_token_[i].empty()) token_to_id_.emplace(id_to_token_[i], static_cast<int32_t>(i));
  }
  merges_.reserve(v.merges.size() * 2);
  int32_t rank = 0;
  for (const auto& [l, r] : v.merges) {
    auto li = token_to_id_.find(l), ri = token_to_id_.find(r), mi = token_to_id_.find(l + r);
    // A merge whose parts or result are not in the vocabulary can never fire.
    if (li != token_to_id_.end() && ri != token_to_id_.end() && mi != token_to_id_.end())
      merges_.emplace(pair_key(li->second, ri->second), std::make_pair(rank, mi->second));
    ++rank;
  }
  added_ = std::move(v.added);
  std::stable_sort(added_.begin(), added_.end(),
                   [](const BpeAddedToken& a, const BpeAddedToken& b) { return a.content.size() > b.content.size(); });
  added_by_byte_.resize(256);
  for (size_t i = 0; i < added_.size(); ++i) {
    added_by_id_[added_[i].id] = i;
    added_by_byte_[static_cast<unsigned char>(added_[i].content[0])].push_back(static_cast<uint32_t>(i));
    // Added tokens that are not in the byte-level vocabulary are looked up by their content.
    if (id_to_token_[static_cast<size_t>(added_[i].id)].empty()) {
      id_to_token_[static_cast<size_t>(added_[i].id)] = added_[i].content;
      token_to_id_.emplace(added_[i].content, added_[i].id);
    }
  }
  const ByteTable& t = byte_table();
  for (int b = 0; b < 256; ++b) {
    auto it = token_to_id_.find(t.to_utf8[b]);
    byte_token_[b] = it == token_to_id_.end() ? -1 : it->second;
  }
}

std::string BpeTokenizer::id_to_piece(int32_t id) const {
  ARQ_CHECK(id >= 0 && id < vocab_size(), Error, source_, ": token id ", id, " out of range [0, ", vocab_size(), ")");
  return id_to_token_[static_cast<size_t>(id)];
}

int32_t BpeTokenizer::piece_to_id(std::string_view piece) const {
  auto it = token_to_id_.find(std::string(piece));
  return it == token_to_id_.end() ? -1 : it->second;
}

void BpeTokenizer::bpe_piece(std::string_view bytes, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  if (ignore_merges_ || bytes.size() == 1) {
    auto it = token_to_id_.find(bpe_bytes_to_unicode(bytes));
    if (it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols in a doubly linked list; candidate merges in a min-heap on (rank, position).
  // A popped candidate is stale when either side has changed since it was pushed.
  struct Sym { int32_t id; int32_t prev, next; };
  std::vector<Sym> sym;
  sym.reserve(bytes.size());
  for (char c : bytes) {
    const int32_t id = byte_token_[static_cast<unsigned char>(c)];
    if (id < 0) continue;  // no token for this byte and no byte fallback: HF drops it too
    const int32_t n = static_cast<int32_t>(sym.size());
    sym.push_back({id, n - 1, n + 1});
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  struct Cand { int32_t rank, left, right_id, left_id, merged; };
  auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.left > b.left; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto push = [&](int32_t left) {
    if (left < 0 || sym[static_cast<size_t>(left)].next < 0) return;
    const Sym& a = sym[static_cast<size_t>(left)];
    const Sym& b = sym[static_cast<size_t>(a.next)];
    auto it = merges_.find(pair_key(a.id, b.id));
    if (it != merges_.end()) heap.push({it->second.first, left, b.id, a.id, it->second.second});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& a = sym[static_cast<size_t>(c.left)];
    if (a.id != c.left_id || a.next < 0) continue;  // left side consumed or changed
    Sym& b = sym[static_cast<size_t>(a.next)];
    if (b.id != c.right_id) continue;
    a.id = c.merged;
    a.next = b.next;
    if (b.next >= 0) sym[static_cast<size_t>(b.next)].prev = c.left;
    b.id = -1;  // dead
    push(a.prev);
    push(c.left);
  }
  for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) out.push_back(sym[static_cast<size_t>(i)].id);
}

void BpeTokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::u32string cps = unicode::utf8_decode(text);
  if (nfc_) cps = unicode::nfc(cps);
  if (pre_.empty()) {
    bpe_piece(unicode::utf8_encode(cps), out);
    return;
  }
  for (const std::u32string& piece : pre_.split(cps)) bpe_piece(unicode::utf8_encode(piece), out);
}

void BpeTokenizer::encode_text(std::string_view text, bool parse_special, std::vector<int32_t>& out) const {
  size_t seg_start = 0;  // start of the plain text not yet encoded
  size_t i = 0;
  while (i < text.size()) {
    const BpeAddedToken* hit = nullptr;
    for (uint32_t k : added_by_byte_[static_cast<unsigned char>(text[i])]) {  // longest first
      const BpeAddedToken& a = added_[k];
      if (a.special && !parse_special) continue;
      if (text.compare(i, a.content.size(), a.content) != 0) continue;
      if (a.single_word) {
        const bool left_ok = i == 0 || !is_word_byte(text[i - 1]);
        const size_t e = i + a.content.size();
        const bool right_ok = e >= text.size() || !is_word_byte(text[e]);
        if (!left_ok || !right_ok) continue;
      }
      hit = &a;
      break;
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t seg_end = i;
    if (hit->lstrip)
      while (seg_end > seg_start && is_space_byte(text[seg_end - 1])) --seg_end;
    encode_segment(text.substr(seg_start, seg_end - seg_start), out);
    out.push_back(hit->id);
    i += hit->content.size();
    if (hit->rstrip)
      while (i < text.size() && is_space_byte(text[i])) ++i;
    seg_start = i;
  }
  encode_segment(text.substr(seg_start), out);
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const ByteTable& t = byte_table();
  std::string out;
  for (int32_t id : ids) {
    ARQ_CHECK(id >= 0 && id < vocab_size(), Error, source_, ": token id ", id, " out of range [0, ", vocab_size(), ")");
    auto a = added_by_id_.find(id);
    if (a != added_by_id_.end()) {
      const BpeAddedToken& tok = added_[a->second];
      if (!(skip_special && tok.special)) out += tok.content;
      continue;
    }
    for (char32_t cp : unicode::utf8_decode(id_to_token_[static_cast<size_t>(id)])) {
      auto it = t.from_cp.find(cp);
      if (it != t.from_cp.end()) out.push_back(static_cast<char>(it->second));
      else unicode::utf8_append(out, cp);
    }
  }
  return out;
}

}  // namespace arq::io
