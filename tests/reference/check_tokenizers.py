"""ar-quant tokenize vs the reference tokenizers, on a few hundred varied strings.

Byte-level BPE (tokenizer.json) is compared with Hugging Face `tokenizers`
(Tokenizer.from_file), sentencepiece models (tokenizer.model) with `sentencepiece`. The GGUF
vocabularies (llama-spm-vocab.gguf, stories260k.gguf) go through ar-quant's own score-based
encoder, so comparing them with sentencepiece checks an implementation that shares no code with
the reference. For each tokenizer and string:
  - encode (no BOS/EOS): ids equal the reference's exactly;
  - encode with --add_special: the reference's ids with its BOS/EOS (HF: add_special_tokens=True;
    sentencepiece: BOS first, as the Llama/Mistral configs ask);
  - sentencepiece only, --split_special: special tokens in the text stay text, as in sp.encode;
  - decode: ar-quant's text equals the reference's decode of the same ids, and for byte-level
    BPE equals the input (the round trip). For sentencepiece the round trip is counted where the
    reference itself round-trips (its normalizer may collapse spaces).
Most strings go through `--jsonl` (one process per tokenizer); a few through the plain
one-string-on-stdin mode to check that path byte for byte. Prints one summary line per tokenizer
and the first mismatches; exit status 1 when anything differs.

    ARQ_BIN=build/apps/ar-quant .refcheck/bin/python tests/reference/check_tokenizers.py
"""
import json
import os
import random
import subprocess
import sys

BIN = os.environ.get("ARQ_BIN", "build/apps/ar-quant")
SHARED = os.environ.get("ARQ_SHARED_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
TOK = os.path.join(SHARED, "tokenizers")
N_ONE_STRING = 8        # strings per tokenizer also sent through the one-string mode
MAX_REPORTED = 6        # mismatches printed per tokenizer and check


def handmade_strings():
    s = [
        # plain prose and contractions
        "Hello world", "Hello, world!", "hello world", " Hello world", "Hello world ", "  Hello  world  ",
        "Once upon a time, there was a little girl named Lily.", "I'm sure you'll see they've done it, don't you?",
        "I'M SURE YOU'LL SEE THEY'VE DONE IT", "It's John's book. 'Tis the season'", "rock'n'roll", "x'y",
        "The quick brown fox jumps over the lazy dog.", "A", "a", ".", "...", "?!?!", "", " ", "  ", "\n",
        # code
        "def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "#include <vector>\nint main() { std::vector<int> v{1, 2, 3}; return v.size(); }",
        '{"key": "value", "list": [1, 2.5, -3e10, null, true]}', "<html><body class=\"x\">Hi &amp; bye</body></html>",
        "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';", "$ ls -la /usr/bin | grep -E '^d' && echo ok",
        "if x==1:\n\tpass\nelif x!=2:\n\t\tprint('no')", "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
        "const f = async (a, b) => { await g(a ?? b); };", "x = [i for i in range(10) if i % 2 == 0]",
        "    indented with four spaces\n        and eight", "a\\b\\c\\\\d", "`backticks` and ~tildes~ and ^carets^",
        "https://example.com/path?query=1&other=two#frag", "user.name+tag@example.co.uk",
        # digits
        "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890", "3.14159265358979",
        "1,000,000", "1 000 000", "-42", "+7 (495) 123-45-67", "2024-01-15T10:30:00Z", "0x1F2E3D", "1e-5",
        "v1.2.3", "a1b2c3", "٣٤٥ ٦٧", "１２３４５", "①②③", "Ⅻ", "pi=3.14 e=2.718", "99 bottles of beer",
        # whitespace runs
        "a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a\n\n\nb", "a\r\nb", "a \n b",
        "   leading", "trailing   ", "\n\nnewlines first", "tabs\t\t\tin\tthe\tmiddle", " \t \n \r\n mixed",
        "non\u00a0breaking\u00a0space", "ideographic\u3000space", "em\u2003space", "zero\u200bwidth", "line\u2028sep",
        "x" + " " * 17 + "y", "\t" * 5, "\n" * 7, " " * 9,
        # CJK and other scripts
        "日本語のテキストです。", "こんにちは世界", "カタカナとひらがな", "中文文本，标点符号。", "你好，世界！",
        "繁體中文測試", "한국어 텍스트입니다", "안녕하세요 세계", "Привет, мир!", "Съешь же ещё этих мягких французских булок.",
        "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới",
        "Zażółć gęślą jaźń", "Ærøskøbing på Ærø", "Straße und Maß", "ﬁ ligature", "Ǆ ǅ ǆ", "İstanbul ıi",
        "ትግርኛ", "ᚠᛇᚻ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝐁𝐨𝐥𝐝", "ⓐⓑⓒ",
        # emoji
        "🤖", "🚀🚀🚀", "I ❤️ NY", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵", "smile 😀 and cry 😢!", "🤖 robot 🤖robot",
        "emoji\U0001FAE0new", "✓ ✗ ★ ☆ ♠ ♣", "→ ← ↑ ↓", "©®™", "°C and °F", "½ ¼ ¾",
        # combining characters and normalization
        "cafe\u0301", "café", "e\u0301\u0302\u0303", "A\u030A vs Å vs \u212B", "n\u0303o", "\u1100\u1161\u11A8",
        "a\u0308o\u0308u\u0308", "Z\u0351\u0352\u0353a\u0354l\u0355g\u0356o", "ﾊﾝｶｸ", "Ｆｕｌｌｗｉｄｔｈ",
        "\u0915\u094d\u0937", "\u00ad soft hyphen", "tab\u0009and\u000bvtab\u000cff",
        # mixed scripts
        "English 日本語 Русский 한국어 العربية", "price: ¥1000 / $9.99 / €8,50", "東京2020 Olympics",
        "混合mixed文字text", "αβγ abc абв", "ok👌好的", "version 2.0版本", "Ω≈ç√∫˜µ≤≥÷",
    ]
    return s


def special_strings(specials):
    out = []
    for sp in specials:
        out += [sp, f"before {sp} after", f"{sp}{sp}", f"x{sp}y", f" {sp} ", f"\n{sp}\n", f"{sp}Hello",
                f"Hello{sp}", f"<{sp}>", sp[:-1] + " " + sp[-1]]
    if len(specials) >= 2:
        out.append(f"{specials[0]}user\nHi there{specials[1]}\n{specials[0]}assistant\n")
    return out


def random_strings(n, seed=1234):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n", "  ",
        ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`", "日本語中文한국어", "éèêëàâäôöûüçñ", "🤖🚀😀👍🏽❤️",
        "\u0301\u0308\u0303", "αβγδεζ", "абвгде", "٠١٢٣", "\u00a0\u3000\u200b",
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        s = "".join(rng.choice(rng.choice(pools)) for _ in range(k))
        out.append(s)
    return out


def build_strings(specials):
    return handmade_strings() + special_strings(specials) + random_strings(120)


def run(args, data):
    p = subprocess.run([BIN] + args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError(f"ar-quant {' '.join(args)} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p.stdout


def arq_encode_many(model, texts, extra=()):
    data = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")
    lines = run(["tokenize", "--model", model, "--jsonl", *extra], data).decode().split("\n")
    assert lines[-1] == "" and len(lines) == len(texts) + 1, "one line of ids per input line"
    return [[int(x) for x in line.split()] for line in lines[:-1]]


def arq_decode_many(model, ids_list):
    data = "".join(" ".join(map(str, ids)) + "\n" for ids in ids_list).encode()
    out = run(["tokenize", "--model", model, "--jsonl", "--decode"], data).decode("utf-8", errors="surrogateescape")
    lines = out.split("\n")
    return [json.loads(line) for line in lines[:-1]]


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


class Report:
    def __init__(self, name):
        self.name, self.counts, self.fails = name, {}, []

    def add(self, check, ok, detail=None):
        good, total = self.counts.get(check, (0, 0))
        self.counts[check] = (good + (1 if ok else 0), total + 1)
        if not ok and detail is not None:
            self.fails.append((check, detail))

    def ids(self, check, text, ours, ref):
        detail = None
        if ours != ref:
            i = first_diff(ours, ref)
            detail = f"{text!r}: at {i} ours {ours[max(0, i - 2):i + 4]} ref {ref[max(0, i - 2):i + 4]}"
        self.add(check, ours == ref, detail)

    def ok(self):
        return all(g == t for g, t in self.counts.values())

    def print(self):
        parts = ", ".join(f"{c} {g}/{t}" for c, (g, t) in self.counts.items())
        print(f"{'ok  ' if self.ok() else 'FAIL'} {self.name:34s} {parts}")
        shown = {}
        for check, detail in self.fails:
            shown[check] = shown.get(check, 0) + 1
            if shown[check] <= MAX_REPORTED:
                print(f"       {check}: {detail}")


def check_hf(name, path):
    from tokenizers import Tokenizer
    ref = Tokenizer.from_file(path)
    added = sorted(ref.get_added_tokens_decoder().items())
    specials = [t.content for _, t in added if t.special][:4] + [t.content for _, t in added if not t.special][:2]
    texts = build_strings(specials)
    rep = Report(name)
    ours = arq_encode_many(path, texts)
    ours_sp = arq_encode_many(path, texts, ["--add_special"])
    refs = [ref.encode(t, add_special_tokens=False).ids for t in texts]
    for t, o, r in zip(texts, ours, refs):
        rep.ids("encode", t, o, r)
    for t, o in zip(texts, ours_sp):
        rep.ids("add_special", t, o, ref.encode(t, add_special_tokens=True).ids)
    decoded = arq_decode_many(path, refs)
    for t, d, r in zip(texts, decoded, refs):
        rd = ref.decode(r, skip_special_tokens=False)
        rep.add("decode=ref", d == rd, f"{t!r}: ours {d!r} ref {rd!r}")
        # A normalizer (Qwen's NFC) is part of the tokenizer: the round trip gives the normalized text.
        want = ref.normalizer.normalize_str(t) if ref.normalizer is not None else t
        rep.add("round-trip", d == want, f"{t!r}: decoded {d!r}, want {want!r}")
    one_string(rep, path, texts, refs, lambda ids: ref.decode(ids, skip_special_tokens=False))
    rep.print()
    return rep.ok()


def check_spm(name, model_file, arq_model=None):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_file)
    arq_model = arq_model or model_file
    controls = sorted((sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.is_control(i)), key=len, reverse=True)
    controls = [c for c in controls if c]
    texts = build_strings(controls or ["<s>", "</s>"])
    rep = Report(name)
    collapses = sp.encode("a  b") == sp.encode("a b") and sp.encode(" a ") == sp.encode("a")
    if arq_model.endswith(".gguf") and collapses:
        # This model strips and collapses spaces (normalizer remove_extra_whitespaces), a flag
        # llama.cpp's converter does not write into GGUF; a GGUF reader (llama.cpp, ar-quant)
        # then keeps the spaces. Only strings that flag leaves alone can agree.
        def untouched(t):
            for c in controls:
                t = t.replace(c, "\0")   # each stretch between control tokens is normalized on its own
            return not any(p.startswith(" ") or p.endswith(" ") or "  " in p for p in t.split("\0"))
        kept = [t for t in texts if untouched(t)]
        print(f"     {name}: {len(texts) - len(kept)} strings with leading/trailing/repeated spaces left out "
              "(remove_extra_whitespaces is not in the GGUF file)")
        texts = kept

    def ref_split(text):
        # Control pieces written in the text become their ids; the stretches between them are
        # encoded by sentencepiece on their own (Hugging Face's LlamaTokenizer behaviour).
        ids, i, start = [], 0, 0
        while i < len(text):
            hit = next((c for c in controls if text.startswith(c, i)), None)
            if hit is None:
                i += 1
                continue
            if start < i:
                ids += sp.encode(text[start:i])
            ids.append(sp.piece_to_id(hit))
            i += len(hit)
            start = i
        if start < len(text):
            ids += sp.encode(text[start:])
        return ids

    plain = [sp.encode(t) for t in texts]
    for t, o, r in zip(texts, arq_encode_many(arq_model, texts, ["--split_special"]), plain):
        rep.ids("encode", t, o, r)
    for t, o in zip(texts, arq_encode_many(arq_model, texts)):
        rep.ids("specials-in-text", t, o, ref_split(t))
    bos = [sp.bos_id()] if sp.bos_id() >= 0 else []
    for t, o, r in zip(texts, arq_encode_many(arq_model, texts, ["--add_special", "--split_special"]), plain):
        rep.ids("add_special", t, o, bos + r)
    decoded = arq_decode_many(arq_model, plain)
    for t, d, r in zip(texts, decoded, plain):
        rd = sp.decode(r)
        rep.add("decode=ref", d == rd, f"{t!r}: ours {d!r} ref {rd!r}")
        if rd == t:
            rep.add("round-trip", d == t, f"{t!r}: decoded {d!r}")
    one_string(rep, arq_model, texts, plain, sp.decode, ["--split_special"])
    rep.print()
    return rep.ok()


def one_string(rep, model, texts, refs, ref_decode, extra=()):
    """The plain mode: the whole of stdin is one string; ids on one line; decode prints the text."""
    picks = [i for i, t in enumerate(texts) if "\n" in t or "  " in t][:N_ONE_STRING // 2]
    picks += [i for i in range(0, len(texts), max(1, len(texts) // N_ONE_STRING))][: N_ONE_STRING - len(picks)]
    for i in picks:
        out = run(["tokenize", "--model", model, *extra], texts[i].encode("utf-8")).decode()
        ids = [int(x) for x in out.split()]
        ok = out.endswith("\n") and out.count("\n") == 1 and ids == refs[i]
        rep.add("one-string", ok, f"{texts[i]!r}: {out!r} vs {refs[i]}")
        back = run(["tokenize", "--model", model, "--decode"], out.encode())
        want = ref_decode(refs[i]).encode("utf-8")
        rep.add("one-string-decode", back == want, f"{texts[i]!r}: {back!r} vs {want!r}")


def main():
    if not os.path.exists(BIN):
        print(f"no ar-quant binary at {BIN} (set ARQ_BIN)")
        return 1
    cases = [
        ("qwen3 (tokenizer.json)", check_hf, os.path.join(TOK, "qwen3", "tokenizer.json")),
        ("llama3 (tokenizer.json)", check_hf, os.path.join(TOK, "llama3", "tokenizer.json")),
        ("llama2 (tokenizer.model)", check_spm, os.path.join(TOK, "llama2.model")),
        ("mistral-v1 (tokenizer.model)", check_spm, os.path.join(TOK, "mistral-v1.model")),
        ("stories260k (tokenizer.model)", check_spm, os.path.join(SHARED, "models", "stories260k", "tokenizer.model")),
    ]
    extra = [
        ("llama2 (llama-spm-vocab.gguf)", os.path.join(TOK, "llama2.model"), os.path.join(TOK, "llama-spm-vocab.gguf")),
        ("stories260k (.gguf)", os.path.join(SHARED, "models", "stories260k", "tokenizer.model"),
         os.path.join(SHARED, "models", "stories260k.gguf")),
    ]
    ok = True
    for name, fn, path in cases:
        if not os.path.exists(path):
            print(f"skip {name}: {path} is absent")
            continue
        ok &= fn(name, path)
    for name, model_file, gguf in extra:
        if not (os.path.exists(model_file) and os.path.exists(gguf)):
            print(f"skip {name}: {gguf} or {model_file} is absent")
            continue
        try:
            run(["inspect", gguf, "--summary"], b"")
        except RuntimeError as e:
            # Only an unreadable file is skipped here (its reader's error is printed); a file that
            # opens and then disagrees with sentencepiece fails below.
            print(f"skip {name}: ar-quant cannot read the file: {e}".strip())
            continue
        ok &= check_spm(name, model_file, gguf)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
