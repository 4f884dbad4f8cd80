#include "io/unicode.h"

#include <algorithm>

#include "io/unicode_tables.h"

namespace arq::io::unicode {

namespace ud = unicode_data;

const char* unicode_version() { return ud::kUnicodeVersion; }

Gc category(char32_t cp) {
  if (cp >= 0x110000) return Gc::Cn;  // raw bytes of invalid UTF-8
  // Last run whose first code point is <= cp.
  const ud::CategoryRun* end = ud::kCategoryRuns + ud::kCategoryRuns_size;
  const ud::CategoryRun* it =
      std::upper_bound(ud::kCategoryRuns, end, static_cast<uint32_t>(cp),
                       [](uint32_t v, const ud::CategoryRun& r) { return v < r.first; });
  return static_cast<Gc>((it - 1)->cat);
}

bool is_whitespace(char32_t cp) {
  // PropList.txt White_Space (unchanged since Unicode 6.3). Python's str.isspace differs
  // (it includes U+001C..U+001F), so this list is written out instead of generated.
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
    case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300 || cp >= 0x110000) return 0;
  const ud::CombiningRun* end = ud::kCombiningRuns + ud::kCombiningRuns_size;
  const ud::CombiningRun* it =
      std::upper_bound(ud::kCombiningRuns, end, static_cast<uint32_t>(cp),
                       [](uint32_t v, const ud::CombiningRun& r) { return v < r.first; });
  return (it - 1)->ccc;
}

// ---- UTF-8 ----------------------------------------------------------------------------

// Decodes one well-formed sequence at s[i] (RFC 3629: no overlongs, no surrogates,
// <= U+10FFFF). Returns its length, or 0 when the bytes there are ill-formed.
static size_t decode_one(std::string_view s, size_t i, char32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const size_t n = s.size() - i;
  const unsigned char c0 = b(0);
  if (c0 < 0x80) { cp = c0; return 1; }
  auto cont = [&](size_t k) { return k < n && (b(k) & 0xC0) == 0x80; };
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    if (!cont(1)) return 0;
    cp = (char32_t(c0 & 0x1F) << 6) | (b(1) & 0x3F);
    return 2;
  }
  if (c0 >= 0xE0 && c0 <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    cp = (char32_t(c0 & 0x0F) << 12) | (char32_t(b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return 3;
  }
  if (c0 >= 0xF0 && c0 <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    cp = (char32_t(c0 & 0x07) << 18) | (char32_t(b(1) & 0x3F) << 12) | (char32_t(b(2) & 0x3F) << 6) |
         (b(3) & 0x3F);
    if (cp < 0x10000 || cp > 0x10FFFF) return 0;
    return 4;
  }
  return 0;
}

size_t utf8_len_at(std::string_view s, size_t i) {
  char32_t cp = 0;
  const size_t n = decode_one(s, i, cp);
  return n == 0 ? 1 : n;
}

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp = 0;
    const size_t n = decode_one(s, i, cp);
    if (n == 0) {
      out.push_back(kRawByteBase + static_cast<unsigned char>(s[i]));
      i += 1;
    } else {
      out.push_back(cp);
      i += n;
    }
  }
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp >= kRawByteBase) {
    out.push_back(static_cast<char>(cp - kRawByteBase));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) utf8_append(out, cp);
  return out;
}

// ---- NFC ------------------------------------------------------------------------------

namespace {

// Hangul syllable arithmetic (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose_into(char32_t cp, std::u32string& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const ud::Decomposition* end = ud::kDecompositions + ud::kDecompositions_size;
  const ud::Decomposition* it = std::lower_bound(
      ud::kDecompositions, end, static_cast<uint32_t>(cp),
      [](const ud::Decomposition& d, uint32_t v) { return d.cp < v; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose_into(it->first, out);
  if (it->second != 0) decompose_into(it->second, out);
}

// The primary composite of (a, b), or 0.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const ud::Composition* end = ud::kCompositions + ud::kCompositions_size;
  const ud::Composition* it = std::lower_bound(
      ud::kCompositions, end, std::pair<uint32_t, uint32_t>(a, b),
      [](const ud::Composition& c, const std::pair<uint32_t, uint32_t>& v) {
        return c.first < v.first || (c.first == v.first && c.second < v.second);
      });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

std::u32string nfc(std::u32string_view s) {
  // Nothing below U+0300 decomposes to something else or composes with its neighbour
  // (their NFC_Quick_Check is Yes), so plain Latin-1 text is already NFC.
  if (std::all_of(s.begin(), s.end(), [](char32_t c) { return c < 0x300; }))
    return std::u32string(s);
  // 1. Full canonical decomposition.
  std::u32string d;
  d.reserve(s.size() + 8);
  for (char32_t cp : s) decompose_into(cp, d);
  // 2. Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) { ++i; continue; }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + static_cast<std::ptrdiff_t>(i), d.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // 3. Canonical composition: a character joins the last starter unless a character in
  // between has class 0 or a class >= its own (it is "blocked").
  std::u32string out;
  out.reserve(d.size());
  size_t starter = std::u32string::npos;
  int last_ccc = -1;
  for (char32_t cp : d) {
    const int ccc = combining_class(cp);
    if (starter != std::u32string::npos) {
      const bool adjacent = out.size() - 1 == starter;
      if (adjacent || (last_ccc < ccc && last_ccc != 0)) {
        const char32_t c = compose_pair(out[starter], cp);
        if (c != 0) {
          out[starter] = c;
          continue;
        }
      }
    }
    if (ccc == 0) starter = out.size();
    last_ccc = ccc;
    out.push_back(cp);
  }
  return out;
}

std::string nfc_utf8(std::string_view s) {
  bool ascii_or_low = true;
  for (unsigned char c : s) {
    // Lead bytes >= 0xCC start code points >= U+0300.
    if (c >= 0xCC) { ascii_or_low = false; break; }
  }
  if (ascii_or_low) return std::string(s);
  return utf8_encode(nfc(utf8_decode(s)));
}

}  // namespace arq::io::unicode
