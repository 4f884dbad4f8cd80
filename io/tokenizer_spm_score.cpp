#include "io/tokenizer_spm_score.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <queue>

#include "engine/error.h"
#include "io/unicode.h"

namespace arq::io {

namespace {

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;
const std::string kSpace = "\xE2\x96\x81";  // U+2581 "▁"

}  // namespace

SpmScoreTokenizer::SpmScoreTokenizer(const GgufVocab& v)
    : tokens_(v.tokens),
      scores_(v.scores),
      types_(v.token_types),
      add_space_prefix_(v.add_space_prefix.value_or(true)),
      remove_extra_whitespaces_(v.remove_extra_whitespaces.value_or(false)) {
  const std::string src = "GGUF vocabulary (tokenizer.ggml.model = \"" + v.model + "\")";
  ARQ_CHECK(!tokens_.empty(), IoError, src, ": tokenizer.ggml.tokens is empty");
  ARQ_CHECK(scores_.size() == tokens_.size(), IoError, src, ": tokenizer.ggml.scores has ", scores_.size(),
            " entries for ", tokens_.size(), " tokens (SPM merges need a score per piece)");
  if (types_.empty()) types_.assign(tokens_.size(), kNormal);
  ARQ_CHECK(types_.size() == tokens_.size(), IoError, src, ": tokenizer.ggml.token_type has ", types_.size(),
            " entries for ", tokens_.size(), " tokens");
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const int32_t id = static_cast<int32_t>(i);
    const std::string& t = tokens_[i];
    piece_id_.emplace(t, id);
    if (types_[i] == kControl && !t.empty()) controls_.emplace_back(t, id);
    if (types_[i] == kUserDefined && !t.empty()) user_defined_.push_back(t);
    unsigned b = 0;
    if (types_[i] == kByte && t.size() == 6 && std::sscanf(t.c_str(), "<0x%2X>", &b) == 1) byte_id_[b] = id;
  }
  std::stable_sort(controls_.begin(), controls_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  std::stable_sort(user_defined_.begin(), user_defined_.end(),
                   [](const auto& a, const auto& b) { return a.size() > b.size(); });
  if (!v.precompiled_charsmap.empty()) {
    // sentencepiece's layout: u32 (little-endian) byte size of the trie, the trie's u32 units,
    // then the replacement strings.
    const std::string& cm = v.precompiled_charsmap;
    ARQ_CHECK(cm.size() >= 4, IoError, src, ": tokenizer.ggml.precompiled_charsmap has ", cm.size(),
              " bytes, too few for its header");
    const auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(cm[k])); };
    const uint32_t trie_bytes = byte(0) | byte(1) << 8 | byte(2) << 16 | byte(3) << 24;
    ARQ_CHECK(trie_bytes % 4 == 0 && trie_bytes >= 4 && trie_bytes <= cm.size() - 4, IoError, src,
              ": tokenizer.ggml.precompiled_charsmap declares a trie of ", trie_bytes, " bytes in a blob of ",
              cm.size(), " bytes");
    charsmap_units_.resize(trie_bytes / 4);
    for (size_t k = 0; k < charsmap_units_.size(); ++k) {
      const size_t o = 4 + 4 * k;
      charsmap_units_[k] = byte(o) | byte(o + 1) << 8 | byte(o + 2) << 16 | byte(o + 3) << 24;
    }
    charsmap_text_ = cm.substr(4 + trie_bytes);
  }
  special_.bos = v.bos;
  special_.eos = v.eos;
  special_.unk = v.unk;
  special_.pad = v.pad;
  if (v.eos >= 0) special_.eos_ids.push_back(v.eos);
  if (v.eot >= 0 && v.eot != v.eos) special_.eos_ids.push_back(v.eot);
  special_.add_bos = v.add_bos.value_or(true) && v.bos >= 0;  // llama.cpp's SPM default
  special_.add_eos = v.add_eos.value_or(false) && v.eos >= 0;
}

std::string SpmScoreTokenizer::id_to_piece(int32_t id) const {
  ARQ_CHECK(id >= 0 && id < vocab_size(), Error, "SPM vocabulary: token id ", id, " out of range [0, ", vocab_size(), ")");
  return tokens_[static_cast<size_t>(id)];
}

int32_t SpmScoreTokenizer::piece_to_id(std::string_view piece) const {
  auto it = piece_id_.find(std::string(piece));
  return it == piece_id_.end() ? -1 : it->second;
}

void SpmScoreTokenizer::emit_piece(const std::string& piece, std::vector<int32_t>& out) const {
  auto it = piece_id_.find(piece);
  if (it != piece_id_.end() && types_[static_cast<size_t>(it->second)] != kUnknown &&
      types_[static_cast<size_t>(it->second)] != kControl) {
    out.push_back(it->second);
    return;
  }
  for (unsigned char c : piece) {
    if (byte_id_[c] >= 0) {
      out.push_back(byte_id_[c]);
    } else {
      // No byte pieces: one <unk> for the whole symbol, as sentencepiece does.
      ARQ_CHECK(special_.unk >= 0, Error, "SPM vocabulary has neither byte pieces nor <unk> for \"", piece, "\"");
      out.push_back(special_.unk);
      return;
    }
  }
}

namespace {

// Length of the well-formed UTF-8 character at s[i] (shortest form, no surrogates, at most
// U+10FFFF), 0 when the bytes there are not one; sentencepiece's DecodeUTF8 rules.
size_t valid_utf8_len(std::string_view s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = at(i);
  if (c < 0x80) return 1;
  const size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (n == 0 || s.size() - i < n) return 0;
  char32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((at(i + k) & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (at(i + k) & 0x3F);
  }
  const char32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[n] || (cp >= 0xD800 && cp < 0xE000) || cp > 0x10FFFF) return 0;
  return n;
}

}  // namespace

std::pair<size_t, size_t> SpmScoreTokenizer::charsmap_match(std::string_view text, size_t i) const {
  // darts-clone's commonPrefixSearch, keeping the longest hit. A unit packs: label (bits 0-7,
  // plus bit 31 on value units so that no byte matches them), has_leaf (bit 8) and the offset
  // to its children (bits 10-31, scaled by 2^8 when bit 9 is set).
  const auto offset = [](uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); };
  const size_t n_units = charsmap_units_.size();
  size_t best_len = 0, best_value = 0;
  size_t pos = offset(charsmap_units_[0]);
  for (size_t k = i; k < text.size(); ++k) {
    const auto c = static_cast<uint8_t>(text[k]);
    pos ^= c;
    if (pos >= n_units) break;
    const uint32_t u = charsmap_units_[pos];
    if ((u & ((1u << 31) | 0xFFu)) != c) break;
    pos ^= offset(u);
    if ((u >> 8) & 1) {
      if (pos >= n_units) break;
      best_len = k - i + 1;
      best_value = charsmap_units_[pos] & ((1u << 31) - 1);
    }
  }
  ARQ_CHECK(best_len == 0 || best_value < charsmap_text_.size(), IoError,
            "tokenizer.ggml.precompiled_charsmap: a rule points at byte ", best_value, " of ",
            charsmap_text_.size(), " replacement bytes");
  return {best_len, best_value};
}

std::pair<std::string_view, size_t> SpmScoreTokenizer::normalize_prefix(std::string_view text, size_t i) const {
  // User-defined pieces pass through unnormalized.
  for (const std::string& u : user_defined_)
    if (text.compare(i, u.size(), u) == 0) return {text.substr(i, u.size()), u.size()};
  if (charsmap_units_.empty()) {
    // Identity (llama.cpp's SPM): every character as written, ill-formed bytes included; they
    // become <0xXX> pieces.
    const size_t n = unicode::utf8_len_at(text, i);
    return {text.substr(i, n), n};
  }
  if (const auto [len, value] = charsmap_match(text, i); len > 0) {
    const char* r = charsmap_text_.data() + value;
    const size_t rlen = charsmap_text_.find('\0', value);
    return {std::string_view(r, (rlen == std::string::npos ? charsmap_text_.size() : rlen) - value), len};
  }
  const size_t n = valid_utf8_len(text, i);
  // sentencepiece: an ill-formed byte becomes U+FFFD, one byte at a time.
  if (n == 0) return {std::string_view("\xEF\xBF\xBD", 3), 1};
  return {text.substr(i, n), n};
}

std::string SpmScoreTokenizer::normalize(std::string_view text) const {
  std::string norm;
  size_t i = 0;
  if (remove_extra_whitespaces_) {
    // Leading spaces (after normalization: nmt_nfkc turns '\n' into one) are dropped.
    while (i < text.size()) {
      const auto [r, n] = normalize_prefix(text, i);
      if (r != " ") break;
      i += n;
    }
  }
  if (i >= text.size()) return norm;
  norm.reserve(text.size() + 3 * 8);
  if (add_space_prefix_) norm += kSpace;
  bool prev_space = remove_extra_whitespaces_;
  while (i < text.size()) {
    auto [r, n] = normalize_prefix(text, i);
    i += n;
    // One space per run (only U+0020 after normalization: the identity normalizer leaves
    // '\n' and '\t' alone).
    while (prev_space && !r.empty() && r.front() == ' ') r.remove_prefix(1);
    if (r.empty()) continue;
    for (char c : r) {
      if (c == ' ') norm += kSpace;
      else norm.push_back(c);
    }
    if (remove_extra_whitespaces_) prev_space = r.back() == ' ';
  }
  if (remove_extra_whitespaces_)
    while (norm.size() >= kSpace.size() && norm.compare(norm.size() - kSpace.size(), kSpace.size(), kSpace) == 0)
      norm.resize(norm.size() - kSpace.size());
  return norm;
}

void SpmScoreTokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  encode_symbols(normalize(text), out);
}

void SpmScoreTokenizer::encode_symbols(const std::string& norm, std::vector<int32_t>& out) const {
  if (norm.empty()) return;
  const size_t first_out = out.size();
  // Symbols are byte ranges of `norm`; `left`/`right` record the merge tree for UNUSED pieces.
  struct Sym { size_t b, e; int32_t prev, next; int32_t left = -1, right = -1; bool alive = true; };
  std::vector<Sym> sym;
  // n initial symbols, and each of at most n - 1 merges appends its two halves: < 3n nodes.
  // Reserving them up front keeps references into `sym` valid across the merge loop.
  ARQ_CHECK(3 * norm.size() < static_cast<size_t>(INT32_MAX), Error, "SPM encode: a text segment of ", norm.size(),
            " normalized bytes is too long (symbol ids are int32)");
  sym.reserve(3 * norm.size());
  for (size_t i = 0; i < norm.size();) {
    size_t len = 0;
    for (const std::string& u : user_defined_)
      if (norm.compare(i, u.size(), u) == 0) { len = u.size(); break; }
    if (len == 0) len = unicode::utf8_len_at(norm, i);
    const int32_t n = static_cast<int32_t>(sym.size());
    sym.push_back({i, i + len, n - 1, n + 1});
    i += len;
  }
  sym.back().next = -1;

  struct Cand { float score; int32_t left, right; size_t len; };
  auto worse = [](const Cand& a, const Cand& b) { return a.score != b.score ? a.score < b.score : a.left > b.left; };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto mergeable = [&](int32_t t) {
    const int32_t ty = types_[static_cast<size_t>(t)];
    return ty == kNormal || ty == kUserDefined || ty == kUnused;
  };
  auto push = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = sym[static_cast<size_t>(l)].next;
    if (r < 0) return;
    const size_t b = sym[static_cast<size_t>(l)].b, e = sym[static_cast<size_t>(r)].e;
    auto it = piece_id_.find(norm.substr(b, e - b));
    if (it == piece_id_.end() || !mergeable(it->second)) return;
    heap.push({scores_[static_cast<size_t>(it->second)], l, r, e - b});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& a = sym[static_cast<size_t>(c.left)];
    if (!a.alive || a.next != c.right) continue;
    Sym& b = sym[static_cast<size_t>(c.right)];
    if (!b.alive || b.e - a.b != c.len) continue;  // a side grew since this pair was seen
    // Keep the halves as new nodes so an UNUSED result can be split again. Copy both before
    // appending: were `sym` ever to reallocate, `a` and `b` would dangle (the cause of a crash
    // on long inputs, where the freed block is unmapped).
    const Sym ha{a.b, a.e, -1, -1, a.left, a.right, false};
    const Sym hb{b.b, b.e, -1, -1, b.left, b.right, false};
    const int32_t lh = static_cast<int32_t>(sym.size());
    sym.push_back(ha);
    const int32_t rh = static_cast<int32_t>(sym.size());
    sym.push_back(hb);
    Sym& a2 = sym[static_cast<size_t>(c.left)];
    Sym& b2 = sym[static_cast<size_t>(c.right)];
    a2.e = b2.e;
    a2.left = lh;
    a2.right = rh;
    a2.next = b2.next;
    if (b2.next >= 0) sym[static_cast<size_t>(b2.next)].prev = c.left;
    b2.alive = false;
    push(a2.prev);
    push(c.left);
  }
  // Resegment UNUSED pieces into their halves, recursively, then map to ids.
  auto emit = [&](auto&& self, int32_t s) -> void {
    const Sym& x = sym[static_cast<size_t>(s)];
    const std::string piece = norm.substr(x.b, x.e - x.b);
    auto it = piece_id_.find(piece);
    if (it != piece_id_.end() && types_[static_cast<size_t>(it->second)] == kUnused && x.left >= 0) {
      self(self, x.left);
      self(self, x.right);
      return;
    }
    emit_piece(piece, out);
  };
  for (int32_t s = 0; s >= 0; s = sym[static_cast<size_t>(s)].next) emit(emit, s);
  // Without byte pieces, sentencepiece spells a run of adjacent unknown symbols ("++" where '+'
  // has no piece) as one <unk>. <unk> is never emitted as a piece, so each one here is such a
  // symbol. (llama.cpp has no answer to compare with: it needs <0xXX> pieces for these.)
  if (special_.unk >= 0) {
    const int32_t unk = special_.unk;
    auto first = out.begin() + static_cast<std::ptrdiff_t>(first_out);
    out.erase(std::unique(first, out.end(), [unk](int32_t a, int32_t b) { return a == unk && b == unk; }), out.end());
  }
}

void SpmScoreTokenizer::encode_text(std::string_view text, bool parse_special, std::vector<int32_t>& out) const {
  if (!parse_special || controls_.empty()) {
    encode_segment(text, out);
    return;
  }
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    bool hit = false;
    for (const auto& [piece, id] : controls_) {
      if (text.compare(i, piece.size(), piece) == 0) {
        encode_segment(text.substr(start, i - start), out);
        out.push_back(id);
        i += piece.size();
        start = i;
        hit = true;
        break;
      }
    }
    if (!hit) ++i;
  }
  encode_segment(text.substr(start), out);
}

std::string SpmScoreTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out, run;
  auto flush = [&]() {
    std::string s;
    for (size_t i = 0; i < run.size();) {
      if (run.compare(i, kSpace.size(), kSpace) == 0) { s.push_back(' '); i += kSpace.size(); }
      else s.push_back(run[i++]);
    }
    // The dummy prefix of the first piece is not part of the text.
    if (add_space_prefix_ && !s.empty() && s[0] == ' ') s.erase(0, 1);
    out += s;
    run.clear();
  };
  for (int32_t id : ids) {
    const std::string p = id_to_piece(id);  // range-checked
    const int32_t ty = types_[static_cast<size_t>(id)];
    if (ty == kControl) {
      flush();
      if (!skip_special) out += p;
    } else if (ty == kByte) {
      unsigned b = 0;
      if (std::sscanf(p.c_str(), "<0x%2X>", &b) == 1) run.push_back(static_cast<char>(b));
    } else {
      run += p;
    }
  }
  flush();
  return out;
}

}  // namespace arq::io
