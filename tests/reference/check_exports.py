"""ar-quant exports read by real clients (issue 7, "Real clients"), on stories260k.

ar-quant quantize --iters 0 --bits 4 --group_size 32 writes every format (sym; and asym where a
format holds it), then:
 (a) transformers loads each HF-style export through the backend a user would use
     (`AutoModelForCausalLM.from_pretrained(dir)` with auto-round installed: quant_method
     "auto-round" goes to auto-round's QuantLinear; "gptq" and "awq" folders are loaded with
     `quantization_config=transformers.AutoRoundConfig()`, auto-round's documented way to run
     GPTQ/AWQ checkpoints without auto-gptq/gptqmodel/autoawq). Its perplexity on the same text with ar-quant's
     protocol (sentencepiece ids without BOS, chunks of seqlen-1, a BOS in front of each, the
     last partial chunk scored) must match `ar-quant eval` of the same folder within 0.5%.
     A format the client cannot run on CPU is reported as SKIP with the backend auto-round picked
     and its error (AWQ-packed and asym GPTQ folders: auto-round's CPU kernels for those need
     torch>=2.8 + auto-round-lib or gptqmodel; its fallback, auto_round:fake, crashes in forward).
 (b) the `gguf` package (gguf-py) reads every GGUF we write: every metadata key is decoded and
     checked against config.json / the tokenizer, every tensor's type/shape/byte size is
     consistent, and gguf-py dequantizes it. Then "gguf-py's dequantization equals ours":
       - each dequantized tensor (Q/K rows un-permuted to the HF order) is within the type's
         error bound of the original weight (a wrong layout, permutation or scale is far outside);
       - a transformers Llama built from gguf-py's dequantized tensors gives the same logits as
         `ar-quant eval --model FILE.gguf --dump_logits` (ar-quant's GGUF reader and block
         decoders) to 1e-4 relative (max|a-b| / max|b|, f32 accumulation over <= 172 terms); the
         distance of the FP model's logits is printed beside it to show the check can fail;
       - gguf-py decodes ../shared/golden/ggml/TYPE.bin bit for bit to TYPE.dequant.f32, the
         vectors ar-quant's own decoders are tested against (tests/golden).
 (c) llama.cpp (llama-cpp-python) loads each GGUF, greedy-generates the same ids as
     `ar-quant generate` from the same prompt, and its perplexity (logits_all) on the same ids
     is within 1% of `ar-quant eval` of the same file. A greedy difference is diagnosed: when
     llama.cpp's two candidate logits are within TIE and the f32 model of gguf-py's tensors picks
     ar-quant's token, it is reported as TIE (llama.cpp rounds activations to Q8_0 for quantized
     dot products, which moves logits by ~0.1%), not as a failure.

    ARQ_BIN=build/apps/ar-quant .refcheck/bin/python tests/reference/check_exports.py
Environment: ARQ_REFWORK (work folder, kept when set).
"""
import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

import numpy as np

BIN = os.environ.get("ARQ_BIN", "build/apps/ar-quant")
SHARED = os.environ.get("ARQ_SHARED_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
MODEL = os.path.join(SHARED, "models", "stories260k")
DATA = os.path.join(SHARED, "data", "tinystories-calib.txt")
GOLDEN = os.path.join(SHARED, "golden", "ggml")
SEQLEN = 256
N_STORIES = 200            # evaluation text: the first 200 stories of the held-out 20%
HF_TOL = 0.005             # (a) relative perplexity difference
LOGIT_TOL = 1e-4           # (b) max|a-b| / max|b|
LLAMA_TOL = 0.01           # (c) relative perplexity difference
PROMPTS = ["Once upon a time, there was a little girl named Lily.", "The dog ran to the park and"]
GEN_TOKENS = 48
TIE = 0.05                 # (c) logits closer than this (~0.4% of the ~12 top logit) count as a tie

VARIANTS = [  # (name, extra flags, formats)
    ("sym", ["--sym"], "auto_round,auto_gptq,auto_awq,gguf:q4_0,gguf:q8_0,gguf:q4_k_m"),
    ("asym", ["--asym"], "auto_round,auto_gptq,auto_awq,gguf:q4_1"),
]

results = []  # (status, what, detail)
GGUFPY_STATE = {}  # gguf path -> (gguf-py dequantized HF state dict, logits function), for (c)


def report(status, what, detail):
    results.append((status, what, detail))
    print(f"{status:4s} {what:46s} {detail}", flush=True)


# ---------------------------------------------------------------- text and ids

def eval_text(work):
    with open(DATA, encoding="utf-8") as f:
        stories = [s.strip("\n") for s in re.split(r"\n[ \t]*\n", f.read()) if s.strip()]
    held_out = stories[int(len(stories) * 0.8):]
    path = os.path.join(work, "eval200.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(held_out[:N_STORIES]) + "\n")
    return path


def text_ids(path):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(MODEL, "tokenizer.model"))
    with open(path, encoding="utf-8") as f:
        return sp.encode(f.read())


def chunks(ids, bos=1):
    per = SEQLEN - 1
    for b in range(0, len(ids), per):
        yield [bos] + ids[b:b + per]


def nll_of(logits, chunk):
    """Sum of -log softmax(logits[t])[chunk[t+1]] in f64 (ar-quant's formula)."""
    lg = np.asarray(logits, dtype=np.float64)[: len(chunk) - 1]
    mx = lg.max(axis=1, keepdims=True)
    lse = np.log(np.exp(lg - mx).sum(axis=1)) + mx[:, 0]
    return float((lse - lg[np.arange(len(chunk) - 1), chunk[1:]]).sum())


def arq_eval(model, text, dump=None):
    cmd = [BIN, "eval", "--model", model, "--text", text, "--seqlen", str(SEQLEN), "--dtype", "f32", "--json"]
    if dump:
        cmd += ["--dump_logits", dump, "--max_chunks", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def torch_ppl(model, ids):
    import torch
    nll, n = 0.0, 0
    with torch.no_grad():
        for ch in chunks(ids):
            logits = model(torch.tensor([ch])).logits[0].float().numpy()
            nll += nll_of(logits, ch)
            n += len(ch) - 1
    return float(np.exp(nll / n)), n


# ---------------------------------------------------------------- (a) HF-style exports

def check_hf(name, folder, text, ids):
    import torch
    from transformers import AutoModelForCausalLM, AutoRoundConfig

    ours = arq_eval(folder, text)
    with open(os.path.join(folder, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    method = qc.get("quant_method")
    picked = []  # auto-round's "Inference backend selection: ... selected=X" line

    class Grab(logging.Handler):
        def emit(self, record):
            m = re.search(r"selected=(\S+)", record.getMessage())
            if m:
                picked.append(m.group(1))
    grab = Grab()
    logging.getLogger("autoround").addHandler(grab)
    try:
        kw = {} if method == "auto-round" else {"quantization_config": AutoRoundConfig()}
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, device_map="cpu", **kw)
        model.eval()
        kinds = sorted({type(m).__module__ + "." + type(m).__name__ for m in model.modules()
                        if "QuantLinear" in type(m).__name__ or "Quant" in type(m).__name__})
        ref, n = torch_ppl(model, ids)
    except Exception as e:  # a backend that does not run on this CPU
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        where = traceback.extract_tb(e.__traceback__)[-1]
        report("SKIP", f"(a) {name} [{method}]",
               f"the client cannot run it on CPU: backend {picked[-1] if picked else '?'}: {type(e).__name__}: {msg} "
               f"(at {os.path.basename(where.filename)}:{where.lineno})")
        return
    finally:
        logging.getLogger("autoround").removeHandler(grab)
    rel = abs(ref - ours["perplexity"]) / ref
    status = "ok" if rel <= HF_TOL and n == ours["tokens"] else "FAIL"
    report(status, f"(a) {name} [{method}]",
           f"transformers {ref:.4f} vs ar-quant {ours['perplexity']:.4f} ({n} vs {ours['tokens']} tokens), "
           f"rel {rel:.2e} (tol {HF_TOL}); backend {picked[-1] if picked else '?'}: "
           f"{', '.join(k.split('.')[-1] for k in kinds) or 'none quantized!'}")
    if not kinds:
        results.append(("FAIL", f"(a) {name}", "no quantized linear modules after loading"))


# ---------------------------------------------------------------- (b) gguf-py

def hf_weights():
    from safetensors.numpy import load_file
    return {k: v.astype(np.float32) for k, v in load_file(os.path.join(MODEL, "model.safetensors")).items()}


def unpermute(w, n_head):
    """Inverse of llama.cpp's convert permutation (rotary pairs interleaved) on [out, in] rows."""
    out, inp = w.shape
    return w.reshape(n_head, out // n_head // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


GGUF_TO_HF = {
    "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight", "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight", "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight", "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
}


def hf_name(gname):
    m = re.match(r"blk\.(\d+)\.(.*)", gname)
    if m:
        return f"model.layers.{m.group(1)}.{GGUF_TO_HF[m.group(2)]}"
    return GGUF_TO_HF[gname]


# Per-type error bound relative to the largest |w| of the 32-element block (the super-block for
# k-quants would be tighter; the block max is enough to catch layout/permutation/scale errors):
# symmetric b-bit codes with the scale max/2^(b-1) (or a searched one near it) round to within
# one step 2*amax/2^b, clamping of the opposite extreme included; k-quants' 6-bit scales and
# fp16 super-scales add a few percent, hence the factor 1.25.
BOUND_STEPS = {"Q4_0": 4, "Q4_1": 4, "Q5_0": 5, "Q5_1": 5, "Q8_0": 8, "Q2_K": 2, "Q3_K": 3, "Q4_K": 4,
               "Q5_K": 5, "Q6_K": 6}


def check_gguf_py(name, path, cfg, sp_vocab, W, text, work):
    import gguf
    from gguf import GGUFReader, GGMLQuantizationType as T
    from gguf.quants import dequantize

    r = GGUFReader(path)
    meta = {}
    for k, fld in r.fields.items():
        if k.startswith("GGUF."):
            continue
        meta[k] = fld.contents()  # decodes scalars, strings and arrays (all of them, to check they parse)
    problems = []
    want = {
        "general.architecture": "llama", "llama.block_count": cfg["num_hidden_layers"],
        "llama.embedding_length": cfg["hidden_size"], "llama.feed_forward_length": cfg["intermediate_size"],
        "llama.attention.head_count": cfg["num_attention_heads"],
        "llama.attention.head_count_kv": cfg["num_key_value_heads"],
        "llama.context_length": cfg["max_position_embeddings"],
        "llama.rope.dimension_count": cfg["hidden_size"] // cfg["num_attention_heads"],
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
    }
    for k, v in want.items():
        if k not in meta:
            problems.append(f"missing {k}")
        elif meta[k] != v:
            problems.append(f"{k}={meta[k]!r}, want {v!r}")
    for k, v in (("llama.attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"]),
                 ("llama.rope.freq_base", cfg["rope_theta"])):
        if k not in meta or abs(meta[k] - v) > 1e-6 * abs(v):
            problems.append(f"{k}={meta.get(k)!r}, want {v}")
    toks = meta.get("tokenizer.ggml.tokens", [])
    scores = meta.get("tokenizer.ggml.scores", [])
    ref_toks = [sp_vocab.id_to_piece(i) for i in range(sp_vocab.get_piece_size())]
    ref_scores = [sp_vocab.get_score(i) for i in range(sp_vocab.get_piece_size())]
    if list(toks) != ref_toks:
        problems.append("tokenizer.ggml.tokens differ from tokenizer.model")
    if len(scores) != len(ref_scores) or np.max(np.abs(np.array(scores) - np.array(ref_scores))) > 0:
        problems.append("tokenizer.ggml.scores differ from tokenizer.model")
    n_meta = len(meta)

    # tensors: names, types, shapes, sizes; dequantize; compare with the source weights
    deq = {}
    worst = (0.0, "")
    types = {}
    for t in r.tensors:
        tname = T(t.tensor_type).name
        types[tname] = types.get(tname, 0) + 1
        ne = [int(x) for x in t.shape]         # ggml order: ne[0] = row length
        shape = tuple(reversed(ne))
        bs, ts = gguf.GGML_QUANT_SIZES[T(t.tensor_type)]
        if t.n_bytes != int(np.prod(ne)) // bs * ts:
            problems.append(f"{t.name}: {t.n_bytes} bytes for {ne} {tname}")
        if t.data_offset % 32 != 0:
            problems.append(f"{t.name}: data offset {t.data_offset} not 32-aligned")
        x = dequantize(t.data, T(t.tensor_type)).astype(np.float32).reshape(shape)
        hn = hf_name(t.name)
        if hn not in W:
            problems.append(f"{t.name} -> {hn}: not in the source checkpoint")
            continue
        if "attn_q" in t.name:
            x = unpermute(x, cfg["num_attention_heads"])
        elif "attn_k" in t.name:
            x = unpermute(x, cfg["num_key_value_heads"])
        deq[hn] = x
        w = W[hn]
        if w.shape != x.shape:
            problems.append(f"{t.name}: shape {x.shape}, source {w.shape}")
            continue
        err = np.abs(x - w)
        if tname == "F32":
            bad = float(err.max()) > 0
            rel = float(err.max())
        elif tname in ("BF16", "F16"):
            eps = 2.0 ** -8 if tname == "BF16" else 2.0 ** -11   # half an ulp, relative
            bad = bool(np.any(err > eps * np.abs(w) + 1e-30))
            rel = float((err / (np.abs(w) + 1e-30)).max())
        else:
            blk = w.reshape(w.shape[0], -1, 32)
            amax = np.abs(blk).max(axis=2, keepdims=True)
            step = 2.0 * amax / 2 ** BOUND_STEPS[tname] * 1.25
            ratio = err.reshape(blk.shape) / np.maximum(step, 1e-30)
            rel = float(ratio.max())
            bad = rel > 1.0
        if bad:
            problems.append(f"{t.name} ({tname}): dequantized tensor is outside the type's bound of the source "
                            f"(worst {rel:.3g})")
        if tname not in ("F32", "BF16", "F16") and rel > worst[0]:
            worst = (rel, t.name)
    missing = sorted(set(W) - set(deq) - {"lm_head.weight"})
    if missing:
        problems.append(f"source tensors absent from the GGUF: {missing[:4]}")
    status = "ok" if not problems else "FAIL"
    report(status, f"(b) {name}: gguf-py reads",
           f"{n_meta} metadata keys, {len(r.tensors)} tensors "
           f"({', '.join(f'{k} {v}' for k, v in sorted(types.items()))}); worst error/bound {worst[0]:.2f} "
           f"({worst[1]})" + ("" if not problems else "; " + "; ".join(problems[:6])))

    # logits: HF Llama from gguf-py's tensors vs ar-quant's GGUF reader
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    conf = LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "torch_dtype")})
    def logits_with(state, ids=None):
        m = LlamaForCausalLM(conf).eval()
        sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
        if "lm_head.weight" not in sd:
            sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
        m.load_state_dict(sd, strict=False)
        ch = next(chunks(text_ids(text))) if ids is None else ids
        with torch.no_grad():
            return m(torch.tensor([ch])).logits[0].float().numpy()
    ref = logits_with(deq)
    GGUFPY_STATE[path] = (deq, logits_with)
    dump = os.path.join(work, f"{name.replace(':', '_').replace('/', '_')}.logits")
    arq_eval(path, text, dump)
    ours = np.fromfile(dump, dtype="<f4")
    if ours.size != ref.size:
        report("FAIL", f"(b) {name}: logits vs ar-quant", f"sizes {ours.size} vs {ref.shape}")
        return
    ours = ours.reshape(ref.shape)
    err = float(np.abs(ours - ref).max() / np.abs(ref).max())
    fp = logits_with(W)
    fp_err = float(np.abs(fp - ref).max() / np.abs(ref).max())
    report("ok" if err <= LOGIT_TOL else "FAIL", f"(b) {name}: gguf-py dequant == ar-quant's",
           f"logits {list(ref.shape)} max rel err {err:.2e} (tol {LOGIT_TOL:.0e}); FP weights would give {fp_err:.2e}")


def check_golden_gguf_py():
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize
    if not os.path.isdir(GOLDEN):
        report("SKIP", "(b) golden ggml vectors", f"{GOLDEN} is absent")
        return
    names = {"q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0, "q5_1": T.Q5_1, "q8_0": T.Q8_0, "q2_K": T.Q2_K,
             "q3_K": T.Q3_K, "q4_K": T.Q4_K, "q5_K": T.Q5_K, "q6_K": T.Q6_K, "f16": T.F16, "bf16": T.BF16}
    bad = []
    for n, q in names.items():
        raw = np.fromfile(os.path.join(GOLDEN, f"{n}.bin"), dtype=np.uint8)
        want = np.fromfile(os.path.join(GOLDEN, f"{n}.dequant.f32"), dtype="<f4")
        if q == T.F16:
            got = raw.view("<f2").astype(np.float32)
        else:
            got = dequantize(raw.reshape(6, -1), q).astype(np.float32).reshape(-1)
        if got.shape != want.shape or not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
            bad.append(n)
    report("ok" if not bad else "FAIL", "(b) gguf-py decodes the ggml golden vectors",
           f"{len(names) - len(bad)}/{len(names)} types bit-exact" + (f"; differ: {bad}" if bad else ""))


# ---------------------------------------------------------------- (c) llama.cpp

def arq_generate(path, prompt):
    out = subprocess.run([BIN, "generate", "--model", path, "--prompt", prompt, "--max_new_tokens", str(GEN_TOKENS),
                          "--ids"], check=True, capture_output=True, text=True)
    # stdout: the prompt and its continuation, then one line of the generated ids
    lines = [ln for ln in out.stdout.splitlines() if re.fullmatch(r"[0-9 ]+", ln.strip())]
    if not lines:
        raise RuntimeError(f"no ids in ar-quant generate output:\n{out.stdout}\n{out.stderr}")
    return [int(v) for v in lines[-1].split()], out.stdout


def check_llama_cpp(name, path, text, ids):
    try:
        from llama_cpp import Llama
    except ImportError as e:
        report("SKIP", f"(c) {name}: llama.cpp", f"llama-cpp-python is not installed ({e})")
        return
    try:
        llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True, verbose=False,
                    n_threads=2, seed=0)
    except Exception as e:
        report("FAIL", f"(c) {name}: llama.cpp loads it", f"{type(e).__name__}: {e}")
        return
    # greedy generation: our own argmax loop over llama.cpp's logits (no sampler settings involved)
    for prompt in PROMPTS:
        ours, _ = arq_generate(path, prompt)
        toks = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        llm.reset()
        llm.eval(toks)
        gen = []
        for _ in range(GEN_TOKENS):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            gen.append(nxt)
            if nxt == llm.token_eos():
                break
            llm.eval([nxt])
        eos = llm.token_eos()
        same = ours == gen or (bool(gen) and gen[-1] == eos and ours == gen[:-1])  # EOS printed or not
        text_out = llm.detokenize(gen).decode("utf-8", "replace")
        detail = ""
        if not same:
            # where they part: both sides' top-2 logit margin at that step (a near-tie flipped by
            # llama.cpp's Q8_0 activation rounding is not a file error)
            k = next(i for i in range(min(len(gen), len(ours))) if gen[i] != ours[i])
            prefix = toks + gen[:k]
            llm.reset()
            llm.eval(prefix)
            lc = np.array(llm.scores[len(prefix) - 1], dtype=np.float64)
            a, b = ours[k], gen[k]
            detail = (f"\n       first difference at generated token {k}: ar-quant {a}, llama.cpp {b}; "
                      f"llama.cpp logits there: {lc[b]:.4f} vs {lc[a]:.4f} (margin {lc[b] - lc[a]:+.4f})")
            if path in GGUFPY_STATE:
                deq, logits_with = GGUFPY_STATE[path]
                hf = logits_with(deq, prefix)[-1].astype(np.float64)
                detail += (f"; f32 model from gguf-py's tensors (= ar-quant's, see (b)): {hf[a]:.4f} vs {hf[b]:.4f} "
                           f"(margin {hf[a] - hf[b]:+.4f})")
            detail += f"\n       llama.cpp {gen}\n       ar-quant  {ours}"
        status = "ok" if same else "FAIL"
        if not same and path in GGUFPY_STATE and abs(lc[b] - lc[a]) < TIE and hf[a] - hf[b] > 0:
            status = "TIE"  # ar-quant = the f32 model of gguf-py's tensors; llama.cpp flips a near-tie
        report(status, f"(c) {name}: greedy text",
               f"{len(gen)} tokens {'identical' if same else 'DIFFER'}: {text_out[:70]!r}" + detail)
    # perplexity on the same ids, chunk by chunk
    nll, n = 0.0, 0
    for ch in chunks(ids):
        llm.reset()
        llm.eval(ch)
        nll += nll_of(np.array(llm.scores[: len(ch)]), ch)
        n += len(ch) - 1
    ref = float(np.exp(nll / n))
    ours = arq_eval(path, text)
    rel = abs(ref - ours["perplexity"]) / ours["perplexity"]
    report("ok" if rel <= LLAMA_TOL else "FAIL", f"(c) {name}: llama.cpp perplexity",
           f"llama.cpp {ref:.4f} vs ar-quant {ours['perplexity']:.4f} ({n} tokens), rel {rel:.2e} (tol {LLAMA_TOL})")
    tk = llm.tokenize(open(text, encoding="utf-8").read().encode("utf-8"), add_bos=False, special=False)
    print(f"     (llama.cpp's own tokenizer on the text: {'same ids as sentencepiece' if tk == ids else f'{len(tk)} ids vs sentencepiece {len(ids)}'})")
    del llm


# ---------------------------------------------------------------- main

def main():
    if not os.path.exists(os.path.join(MODEL, "config.json")) or not os.path.exists(DATA):
        print("skipped: needs ../shared/models/stories260k and ../shared/data/tinystories-calib.txt")
        return 0
    import sentencepiece as spm
    import torch
    torch.set_num_threads(2)
    keep = "ARQ_REFWORK" in os.environ
    work = os.environ.get("ARQ_REFWORK") or tempfile.mkdtemp(prefix="arq-exports-")
    os.makedirs(work, exist_ok=True)
    try:
        text = eval_text(work)
        ids = text_ids(text)
        with open(os.path.join(MODEL, "config.json")) as f:
            cfg = json.load(f)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(MODEL, "tokenizer.model"))
        W = hf_weights()
        fp = arq_eval(MODEL, text)
        print(f"text: first {N_STORIES} held-out stories, {len(ids)} ids; FP ar-quant perplexity {fp['perplexity']:.4f}")
        for vname, flags, formats in VARIANTS:
            out = os.path.join(work, f"out_{vname}")
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run([BIN, "quantize", "--model", MODEL, "--iters", "0", "--bits", "4", "--group_size", "32",
                            *flags, "--format", formats, "--output_dir", out], check=True, capture_output=True)
            root = glob.glob(os.path.join(out, "*"))[0]
            for fmt in formats.split(","):
                sub = os.path.join(root, fmt.replace(":", "-").replace("_", "-"))
                label = f"{vname} {fmt}"
                try:
                    if fmt.startswith("gguf"):
                        path = glob.glob(os.path.join(sub, "*.gguf"))[0]
                        check_gguf_py(label, path, cfg, sp, W, text, work)
                        check_llama_cpp(label, path, text, ids)
                    else:
                        check_hf(label, sub, text, ids)
                except Exception as e:
                    traceback.print_exc()
                    report("FAIL", label, f"{type(e).__name__}: {e}")
        check_golden_gguf_py()
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    n_fail = sum(1 for s, _, _ in results if s == "FAIL")
    n_skip = sum(1 for s, _, _ in results if s == "SKIP")
    n_tie = sum(1 for s, _, _ in results if s == "TIE")
    print(f"\n{len(results)} checks: {len(results) - n_fail - n_skip - n_tie} ok, {n_fail} failed, {n_skip} skipped "
          f"(the client cannot run that format on CPU), {n_tie} greedy near-ties (llama.cpp parts from ar-quant at a "
          f"logit tie < {TIE}, where the f32 model of gguf-py's tensors agrees with ar-quant)")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
