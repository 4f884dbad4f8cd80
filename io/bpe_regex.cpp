#include "io/bpe_regex.h"

#include <limits>
#include <memory>

#include "engine/error.h"
#include "io/unicode.h"

namespace arq::io {

namespace uc = unicode;

namespace {

constexpr int kInf = -1;
// A pathological pattern/text pair must fail loudly instead of hanging a calibration run.
constexpr uint64_t kMaxSteps = 200'000'000;

struct Node {
  enum Kind { chr, cls, any, seq, alt, rep, look, atomic, bol, eol, bot, eot } kind;
  explicit Node(Kind k) : kind(k) {}
  char32_t cp = 0;
  bool icase = false;
  bool neg = false;        // look
  int32_t cls_index = 0;
  int min = 0, max = 0;    // rep; max == kInf for unbounded
  bool greedy = true, possessive = false;
  std::vector<Node> kids;
};

char32_t fold(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c == 0x17F) return 's';
  if (c == 0x212A) return 'k';
  return c;
}

}  // namespace

// Parses the pattern into a Node tree, then emits the backtracking program.
class RegexCompiler {
 public:
  RegexCompiler(CodepointRegex& re, std::string_view pattern)
      : re_(re), p_(uc::utf8_decode(pattern)), src_(pattern) {}

  void compile() {
    Node root = parse_alt(false);
    if (i_ != p_.size()) fail("unbalanced ')'");
    emit(root);
    re_.prog_.push_back({CodepointRegex::Op::match});
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw IoError(cat("pre-tokenizer regex: ", why, " at character ", i_, " of pattern \"", src_, "\""));
  }
  bool eof() const { return i_ >= p_.size(); }
  char32_t peek() const { return p_[i_]; }
  bool accept(char32_t c) {
    if (!eof() && p_[i_] == c) { ++i_; return true; }
    return false;
  }

  Node parse_alt(bool icase) {
    Node alt{Node::alt};
    alt.kids.push_back(parse_seq(icase));
    while (accept('|')) alt.kids.push_back(parse_seq(icase));
    if (alt.kids.size() == 1) return std::move(alt.kids[0]);
    return alt;
  }

  Node parse_seq(bool icase) {
    Node seq{Node::seq};
    while (!eof() && peek() != '|' && peek() != ')') {
      Node atom = parse_atom(icase);
      seq.kids.push_back(parse_quant(std::move(atom)));
    }
    return seq;
  }

  bool parse_int(int& v) {
    size_t start = i_;
    v = 0;
    while (!eof() && peek() >= '0' && peek() <= '9') {
      v = v * 10 + static_cast<int>(peek() - '0');
      ++i_;
      if (v > 100000) fail("repeat count too large");
    }
    return i_ > start;
  }

  Node parse_quant(Node atom) {
    for (;;) {
      if (eof()) return atom;
      int mn = 0, mx = 0;
      const size_t save = i_;
      const char32_t c = peek();
      if (c == '?') { mn = 0; mx = 1; ++i_; }
      else if (c == '*') { mn = 0; mx = kInf; ++i_; }
      else if (c == '+') { mn = 1; mx = kInf; ++i_; }
      else if (c == '{') {
        ++i_;
        int a = 0, b = 0;
        const bool has_a = parse_int(a);
        if (accept('}')) {
          if (!has_a) { i_ = save; return atom; }
          mn = mx = a;
        } else if (accept(',')) {
          const bool has_b = parse_int(b);
          if (!accept('}') || (!has_a && !has_b)) { i_ = save; return atom; }  // literal '{'
          mn = has_a ? a : 0;
          mx = has_b ? b : kInf;
          if (mx != kInf && mx < mn) fail("bad repeat range");
        } else {
          i_ = save;
          return atom;  // Oniguruma reads an invalid interval as a literal '{'
        }
      } else {
        return atom;
      }
      Node rep{Node::rep};
      rep.min = mn;
      rep.max = mx;
      if (accept('?')) rep.greedy = false;
      else if (accept('+')) rep.possessive = true;
      rep.kids.push_back(std::move(atom));
      atom = std::move(rep);
    }
  }

  int32_t add_class(CodepointRegex::ClassSet c) {
    re_.classes_.push_back(std::move(c));
    return static_cast<int32_t>(re_.classes_.size() - 1);
  }

  Node class_node(CodepointRegex::ClassSet c, bool icase) {
    Node n{Node::cls};
    n.cls_index = add_class(std::move(c));
    n.icase = icase;
    return n;
  }

  uint32_t property_mask(const std::string& name) {
    using uc::Gc;
    static const char* kNames[] = {"Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd",
                                   "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm",
                                   "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
    if (name == "L" || name == "Letter") return uc::kMaskL;
    if (name == "M" || name == "Mark") return uc::kMaskM;
    if (name == "N" || name == "Number") return uc::kMaskN;
    if (name == "P" || name == "Punctuation") return uc::kMaskP;
    if (name == "S" || name == "Symbol") return uc::kMaskS;
    if (name == "Z" || name == "Separator") return uc::kMaskZ;
    if (name == "C" || name == "Other") return uc::kMaskC;
    for (uint32_t k = 0; k < 30; ++k)
      if (name == kNames[k]) return 1u << k;
    fail(cat("unknown Unicode property \\p{", name, "}"));
  }

  uint32_t parse_hex(size_t max_digits) {
    uint32_t v = 0;
    size_t n = 0;
    while (!eof() && n < max_digits) {
      const char32_t c = peek();
      int d = -1;
      if (c >= '0' && c <= '9') d = static_cast<int>(c - '0');
      else if (c >= 'a' && c <= 'f') d = static_cast<int>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = static_cast<int>(c - 'A' + 10);
      if (d < 0) break;
      v = v * 16 + static_cast<uint32_t>(d);
      ++i_;
      ++n;
    }
    if (n == 0) fail("bad hex escape");
    return v;
  }

  // After a backslash: either a single code point (returns true, sets cp) or a class item.
  bool parse_escape(char32_t& cp, CodepointRegex::ClassItem& item) {
    if (eof()) fail("trailing backslash");
    const char32_t c = p_[i_++];
    switch (c) {
      case 'r': cp = '\r'; return true;
      case 'n': cp = '\n'; return true;
      case 't': cp = '\t'; return true;
      case 'f': cp = '\f'; return true;
      case 'v': cp = '\v'; return true;
      case 'a': cp = 0x07; return true;
      case 'e': cp = 0x1B; return true;
      case '0': cp = 0; return true;
      case 'x':
        if (accept('{')) {
          cp = parse_hex(8);
          if (!accept('}')) fail("unterminated \\x{");
        } else {
          cp = parse_hex(2);
        }
        return true;
      case 'u': cp = parse_hex(4); return true;
      case 's': case 'S': item = {}; item.space = true; item.neg = c == 'S'; return false;
      case 'd': case 'D': item = {}; item.mask = uc::gc_bit(uc::Gc::Nd); item.neg = c == 'D'; return false;
      case 'w': case 'W':
        // Oniguruma's Unicode \w: letters, marks, decimal digits, connector punctuation.
        item = {};
        item.mask = uc::kMaskL | uc::kMaskM | uc::gc_bit(uc::Gc::Nd) | uc::gc_bit(uc::Gc::Pc);
        item.neg = c == 'W';
        return false;
      case 'p': case 'P': {
        std::string name;
        bool neg = c == 'P';
        if (accept('{')) {
          if (accept('^')) neg = !neg;
          while (!eof() && peek() != '}') name.push_back(static_cast<char>(p_[i_++]));
          if (!accept('}')) fail("unterminated \\p{");
        } else {
          if (eof()) fail("bad \\p");
          name.push_back(static_cast<char>(p_[i_++]));
        }
        item = {};
        item.mask = property_mask(name);
        item.neg = neg;
        return false;
      }
      default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9'))
          fail(cat("unsupported escape \\", static_cast<char>(c)));
        cp = c;  // escaped punctuation stands for itself
        return true;
    }
  }

  Node parse_class(bool icase) {
    CodepointRegex::ClassSet set;
    if (accept('^')) set.neg = true;
    bool first = true;
    for (;;) {
      if (eof()) fail("unterminated character class");
      char32_t c = peek();
      if (c == ']' && !first) { ++i_; break; }
      first = false;
      if (c == '[') fail("nested character classes are not supported");
      ++i_;
      char32_t lo = c;
      if (c == '\\') {
        CodepointRegex::ClassItem item;
        if (!parse_escape(lo, item)) { set.items.push_back(item); continue; }
      }
      // A range "lo-hi", unless '-' is the last character before ']'.
      if (!eof() && peek() == '-' && i_ + 1 < p_.size() && p_[i_ + 1] != ']') {
        ++i_;
        char32_t hi = p_[i_++];
        if (hi == '\\') {
          CodepointRegex::ClassItem item;
          if (!parse_escape(hi, item)) fail("class escape used as a range end");
        }
        if (hi < lo) fail("reversed range in character class");
        set.items.push_back({lo, hi});
      } else {
        set.items.push_back({lo, lo});
      }
    }
    return class_node(std::move(set), icase);
  }

  Node parse_atom(bool icase) {
    const char32_t c = p_[i_++];
    switch (c) {
      case '(': {
        Node n{Node::seq};
        if (accept('?')) {
          if (accept(':')) {
            n = parse_alt(icase);
          } else if (accept('=') || (peek() == '!' && (++i_, true))) {
            Node look{Node::look};
            look.neg = p_[i_ - 1] == '!';
            look.kids.push_back(parse_alt(icase));
            n = std::move(look);
          } else if (accept('>')) {
            Node at{Node::atomic};
            at.kids.push_back(parse_alt(icase));
            n = std::move(at);
          } else if (accept('i')) {
            if (accept(')')) fail("scoped (?i) without a group is not supported");
            if (!accept(':')) fail("unsupported group flags");
            n = parse_alt(true);
          } else {
            fail("unsupported group syntax (lookbehind, named groups, flags)");
          }
        } else {
          n = parse_alt(icase);  // capturing group: captures are not needed
        }
        if (!accept(')')) fail("missing ')'");
        return n;
      }
      case '[': return parse_class(icase);
      case '.': return Node{Node::any};
      case '^': return Node{Node::bol};
      case '$': return Node{Node::eol};
      case '\\': {
        if (accept('A')) return Node{Node::bot};
        if (accept('z')) return Node{Node::eot};
        char32_t cp = 0;
        CodepointRegex::ClassItem item;
        if (!parse_escape(cp, item)) {
          CodepointRegex::ClassSet set;
          set.items.push_back(item);
          return class_node(std::move(set), icase);
        }
        Node n{Node::chr};
        n.cp = cp;
        n.icase = icase;
        return n;
      }
      case '*': case '+': case '?': fail("quantifier without a target");
      default: {
        Node n{Node::chr};
        n.cp = c;
        n.icase = icase;
        return n;
      }
    }
  }

  // ---- code generation ----
  using Op = CodepointRegex::Op;
  int32_t pc() const { return static_cast<int32_t>(re_.prog_.size()); }
  int32_t push(CodepointRegex::Inst in) {
    re_.prog_.push_back(in);
    return pc() - 1;
  }

  void emit_optional(const Node& body, bool greedy) {
    const int32_t s = push({Op::split});
    emit(body);
    const int32_t out = pc();
    re_.prog_[s].x = greedy ? s + 1 : out;
    re_.prog_[s].y = greedy ? out : s + 1;
  }

  void emit_star(const Node& body, bool greedy) {
    const int32_t s = push({Op::split});
    emit(body);
    push({Op::jmp, false, 0, s});
    const int32_t out = pc();
    re_.prog_[s].x = greedy ? s + 1 : out;
    re_.prog_[s].y = greedy ? out : s + 1;
  }

  void emit_rep(const Node& n) {
    const Node& body = n.kids[0];
    for (int k = 0; k < n.min; ++k) emit(body);
    if (n.max == kInf) emit_star(body, n.greedy);
    else
      for (int k = n.min; k < n.max; ++k) emit_optional(body, n.greedy);
  }

  void emit(const Node& n) {
    switch (n.kind) {
      case Node::chr: push({Op::chr, n.icase, n.icase ? fold(n.cp) : n.cp}); break;
      case Node::cls: push({Op::cls, n.icase, 0, n.cls_index}); break;
      case Node::any: push({Op::any}); break;
      case Node::bol: push({Op::bol}); break;
      case Node::eol: push({Op::eol}); break;
      case Node::bot: push({Op::bot}); break;
      case Node::eot: push({Op::eot}); break;
      case Node::seq:
        for (const Node& k : n.kids) emit(k);
        break;
      case Node::alt: {
        std::vector<int32_t> jumps;
        for (size_t k = 0; k < n.kids.size(); ++k) {
          if (k + 1 < n.kids.size()) {
            const int32_t s = push({Op::split});
            re_.prog_[s].x = s + 1;
            emit(n.kids[k]);
            jumps.push_back(push({Op::jmp}));
            re_.prog_[s].y = pc();
          } else {
            emit(n.kids[k]);
          }
        }
        for (int32_t j : jumps) re_.prog_[j].x = pc();
        break;
      }
      case Node::rep:
        if (n.possessive) {
          // x*+ == (?>x*)
          const int32_t a = push({Op::atomic});
          Node inner = n;
          inner.possessive = false;
          emit_rep(inner);
          push({Op::match});
          re_.prog_[a].x = pc();
        } else {
          emit_rep(n);
        }
        break;
      case Node::look:
      case Node::atomic: {
        const int32_t a = push({n.kind == Node::look ? Op::look : Op::atomic, n.neg});
        emit(n.kids[0]);
        push({Op::match});
        re_.prog_[a].x = pc();
        break;
      }
    }
  }

  CodepointRegex& re_;
  std::u32string p_;
  std::string src_;
  size_t i_ = 0;
};

CodepointRegex::CodepointRegex(std::string_view pattern) : pattern_(pattern) {
  RegexCompiler(*this, pattern).compile();
}

CodepointRegex CodepointRegex::literal(std::string_view lit) {
  std::string pat;
  for (char32_t cp : uc::utf8_decode(lit)) pat += cat("\\x{", std::hex, static_cast<uint32_t>(cp), "}");
  CodepointRegex re(pat);
  re.pattern_ = std::string(lit);
  return re;
}

bool CodepointRegex::class_matches(const ClassSet& c, char32_t cp, bool icase) const {
  auto test = [&](char32_t v) {
    for (const ClassItem& it : c.items) {
      bool hit;
      if (it.space) hit = uc::is_whitespace(v);
      else if (it.mask != 0) hit = uc::in_mask(v, it.mask);
      else hit = v >= it.lo && v <= it.hi;
      if (hit != it.neg) return true;
    }
    return false;
  };
  bool hit = test(cp);
  if (!hit && icase) {
    const char32_t f = fold(cp);
    if (f != cp) hit = test(f);
    if (!hit && f >= 'a' && f <= 'z') hit = test(f - 32);
  }
  return hit != c.neg;
}

bool CodepointRegex::run(std::u32string_view text, int32_t pc0, size_t pos0, size_t& end,
                         uint64_t& steps) const {
  struct Frame { int32_t pc; size_t pos; };
  std::vector<Frame> stack;
  stack.push_back({pc0, pos0});
  const size_t n = text.size();
  while (!stack.empty()) {
    int32_t pc = stack.back().pc;
    size_t pos = stack.back().pos;
    stack.pop_back();
    for (;;) {
      if (++steps > kMaxSteps)
        throw IoError(cat("pre-tokenizer regex \"", pattern_, "\": backtracking limit exceeded on a ", n,
                          "-character piece"));
      const Inst& in = prog_[static_cast<size_t>(pc)];
      bool ok = true;
      switch (in.op) {
        case Op::chr:
          ok = pos < n && (in.flag ? fold(text[pos]) == in.cp : text[pos] == in.cp);
          if (ok) { ++pos; ++pc; }
          break;
        case Op::cls:
          ok = pos < n && class_matches(classes_[static_cast<size_t>(in.x)], text[pos], in.flag);
          if (ok) { ++pos; ++pc; }
          break;
        case Op::any:
          ok = pos < n && text[pos] != '\n';
          if (ok) { ++pos; ++pc; }
          break;
        case Op::split:
          stack.push_back({in.y, pos});
          pc = in.x;
          break;
        case Op::jmp: pc = in.x; break;
        case Op::match: end = pos; return true;
        case Op::look: {
          size_t e = 0;
          ok = run(text, pc + 1, pos, e, steps) != in.flag;
          if (ok) pc = in.x;
          break;
        }
        case Op::atomic: {
          size_t e = 0;
          ok = run(text, pc + 1, pos, e, steps);
          if (ok) { pc = in.x; pos = e; }
          break;
        }
        case Op::bol: ok = pos == 0 || text[pos - 1] == '\n'; ++pc; break;
        case Op::eol: ok = pos == n || text[pos] == '\n'; ++pc; break;
        case Op::bot: ok = pos == 0; ++pc; break;
        case Op::eot: ok = pos == n; ++pc; break;
      }
      if (!ok) break;
    }
  }
  return false;
}

bool CodepointRegex::find(std::u32string_view text, size_t from, size_t& begin, size_t& end) const {
  if (prog_.empty()) return false;
  uint64_t steps = 0;
  for (size_t s = from; s <= text.size(); ++s) {
    size_t e = 0;
    if (run(text, 0, s, e, steps)) {
      begin = s;
      end = e;
      return true;
    }
  }
  return false;
}

}  // namespace arq::io
