// Unicode helpers for the tokenizers: UTF-8 <-> code points, general categories, the
// White_Space property and NFC normalization. Tables come from io/unicode_tables.cpp
// (generated from Python's unicodedata; see scripts/gen_unicode_tables.py).
//
// Invalid UTF-8 never throws here: each byte of an ill-formed sequence decodes to the
// out-of-range code point kRawByteBase + byte, which has category Cn and encodes back to the
// same single byte. So "decode, process, encode" keeps arbitrary bytes intact, which the
// byte-level BPE round trip relies on.
//
//   std::u32string cps = arq::io::unicode::utf8_decode("Äpfel");
//   bool l = arq::io::unicode::is_letter(cps[0]);            // true
//   std::string n = arq::io::unicode::nfc_utf8("A\u030A");   // "Å"
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace arq::io::unicode {

constexpr char32_t kRawByteBase = 0x110000;  // raw byte b of invalid UTF-8 -> kRawByteBase + b

// General category, in the generator's order (Cn = unassigned = 0).
enum class Gc : uint8_t {
  Cn, Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps,
  Pe, Pi, Pf, Po, Sm, Sc, Sk, So, Zs, Zl, Zp, Cc, Cf, Cs, Co,
};
constexpr uint32_t gc_bit(Gc g) { return 1u << static_cast<uint32_t>(g); }
// Masks of the one-letter major classes (\p{L}, \p{M}, ...).
constexpr uint32_t kMaskL = gc_bit(Gc::Lu) | gc_bit(Gc::Ll) | gc_bit(Gc::Lt) | gc_bit(Gc::Lm) | gc_bit(Gc::Lo);
constexpr uint32_t kMaskM = gc_bit(Gc::Mn) | gc_bit(Gc::Mc) | gc_bit(Gc::Me);
constexpr uint32_t kMaskN = gc_bit(Gc::Nd) | gc_bit(Gc::Nl) | gc_bit(Gc::No);
constexpr uint32_t kMaskP = gc_bit(Gc::Pc) | gc_bit(Gc::Pd) | gc_bit(Gc::Ps) | gc_bit(Gc::Pe) |
                            gc_bit(Gc::Pi) | gc_bit(Gc::Pf) | gc_bit(Gc::Po);
constexpr uint32_t kMaskS = gc_bit(Gc::Sm) | gc_bit(Gc::Sc) | gc_bit(Gc::Sk) | gc_bit(Gc::So);
constexpr uint32_t kMaskZ = gc_bit(Gc::Zs) | gc_bit(Gc::Zl) | gc_bit(Gc::Zp);
constexpr uint32_t kMaskC = gc_bit(Gc::Cn) | gc_bit(Gc::Cc) | gc_bit(Gc::Cf) | gc_bit(Gc::Cs) | gc_bit(Gc::Co);

const char* unicode_version();  // of the generated tables, e.g. "14.0.0"

Gc category(char32_t cp);
inline bool in_mask(char32_t cp, uint32_t mask) { return (gc_bit(category(cp)) & mask) != 0; }
inline bool is_letter(char32_t cp) { return in_mask(cp, kMaskL); }
inline bool is_number(char32_t cp) { return in_mask(cp, kMaskN); }
// The White_Space property (PropList.txt), which regex \s means in Oniguruma / Rust regex.
bool is_whitespace(char32_t cp);
uint8_t combining_class(char32_t cp);

std::u32string utf8_decode(std::string_view s);
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(std::u32string_view s);
// Length in bytes of the UTF-8 sequence starting at s[i] (1 for an invalid byte).
size_t utf8_len_at(std::string_view s, size_t i);

// Canonical composition (NFC). Hangul is handled algorithmically; everything else by table.
std::u32string nfc(std::u32string_view s);
std::string nfc_utf8(std::string_view s);

}  // namespace arq::io::unicode
