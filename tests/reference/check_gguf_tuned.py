"""A SignRound-tuned GGUF read by llama.cpp (issue 7, tuned GGUF path; spec/autoround.md §4d).

ar-quant quantize --format gguf:<preset> --iters N writes a GGUF whose linears carry SignRound's
tuned levels, sub-block scales and d/dmin. llama.cpp (llama-cpp-python) must load it, and its
perplexity on the same ids (ar-quant's protocol: the ids ar-quant's own tokenizer gives for the
file, without BOS; chunks of seqlen-1 with a BOS in front; logits_all) must be within 1% of
`ar-quant eval` of the same file.
(llama.cpp rounds activations to Q8_0/Q8_K for quantized dot products, hence a tolerance.)

Models: ../shared/models/stories260k by default (its 64/172-wide rows take the Q5_0/Q8_0/BF16
fallbacks of every k preset), plus any HF folder given in ARQ_TUNED_MODELS (comma-separated
`folder[:calib.txt[:eval.txt]]`; a model with 256-multiple rows, e.g. the `ar-quant demo` model,
exercises the k-quant blocks themselves).

    ARQ_BIN=build/apps/ar-quant .refcheck/bin/python tests/reference/check_gguf_tuned.py
Environment: ARQ_REFWORK (work folder, kept when set), ARQ_PRESETS (default q3_k_m,q4_k_m),
ARQ_ITERS (default 50), ARQ_NSAMPLES (default 64).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ.get("ARQ_BIN", "build/apps/ar-quant")
SHARED = os.environ.get("ARQ_SHARED_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"))
STORIES = os.path.join(SHARED, "models", "stories260k")
DATA = os.path.join(SHARED, "data", "tinystories-calib.txt")
SEQLEN = 256
TOL = 0.01
PRESETS = os.environ.get("ARQ_PRESETS", "q3_k_m,q4_k_m").split(",")
ITERS = int(os.environ.get("ARQ_ITERS", "50"))
NSAMPLES = int(os.environ.get("ARQ_NSAMPLES", "64"))

results = []


def report(status, what, detail):
    results.append(status)
    print(f"{status:4s} {what:48s} {detail}", flush=True)


def stories_texts(work):
    """calib: the first 80% of the stories; eval: the first 200 stories of the other 20%."""
    with open(DATA, encoding="utf-8") as f:
        stories = [s.strip("\n") for s in re.split(r"\n[ \t]*\n", f.read()) if s.strip()]
    n_cal = int(len(stories) * 0.8)
    cal, ev = os.path.join(work, "calib.txt"), os.path.join(work, "eval.txt")
    with open(cal, "w", encoding="utf-8") as f:
        f.write("\n\n".join(stories[:n_cal]) + "\n")
    with open(ev, "w", encoding="utf-8") as f:
        f.write("\n\n".join(stories[n_cal:n_cal + 200]) + "\n\n")
    return cal, ev


def arq_eval(model, text):
    out = subprocess.run([BIN, "eval", "--model", model, "--text", text, "--seqlen", str(SEQLEN), "--dtype", "f32", "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def nll_of(logits, chunk):
    lg = np.asarray(logits, dtype=np.float64)[: len(chunk) - 1]
    mx = lg.max(axis=1, keepdims=True)
    lse = np.log(np.exp(lg - mx).sum(axis=1)) + mx[:, 0]
    return float((lse - lg[np.arange(len(chunk) - 1), chunk[1:]]).sum())


def llama_cpp_ppl(path, ids, bos):
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True, verbose=False, n_threads=2, seed=0)
    nll, n = 0.0, 0
    per = SEQLEN - 1
    for b in range(0, len(ids), per):
        ch = [bos] + ids[b:b + per]
        llm.reset()
        llm.eval(ch)
        nll += nll_of(np.array(llm.scores[: len(ch)]), ch)
        n += len(ch) - 1
    del llm
    return float(np.exp(nll / n)), n


def tensor_types(path):
    import gguf
    r = gguf.GGUFReader(path)
    counts = {}
    for t in r.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return counts


def arq_ids(model, text):
    """The ids `ar-quant eval` scores for this model (its own tokenizer of the folder or .gguf)."""
    with open(text, encoding="utf-8") as f:
        out = subprocess.run([BIN, "tokenize", "--model", model], stdin=f, check=True, capture_output=True, text=True).stdout
    return [int(v) for v in out.split()]


def check_model(name, folder, calib, text, work):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(folder, "tokenizer.model"))
    with open(text, encoding="utf-8") as f:
        sp_ids = sp.encode(f.read())
    bos = sp.bos_id()
    for preset in PRESETS:
        out = os.path.join(work, f"{name}-{preset}")
        r = subprocess.run([BIN, "quantize", "--model", folder, "--format", f"gguf:{preset}", "--iters", str(ITERS),
                            "--dataset", calib + ":concat=true", "--seqlen", str(SEQLEN), "--nsamples", str(NSAMPLES),
                            "--output_dir", out, "--overwrite"], capture_output=True, text=True)
        if r.returncode != 0:
            report("FAIL", f"{name} gguf:{preset} iters {ITERS}: quantize", r.stderr.strip()[-300:])
            continue
        path = glob.glob(os.path.join(out, "**", "*.gguf"), recursive=True)[0]
        tuned = [ln for ln in (r.stdout + r.stderr).splitlines() if "from the tuned layers" in ln]
        print(f"     {name} gguf:{preset}: {tensor_types(path)}; {tuned[0].split('(')[-1].rstrip(')') if tuned else 'no tuned layers?'}")
        # llama.cpp gets exactly the ids ar-quant scores for the file (ar-quant's GGUF tokenizer can
        # split differently from sentencepiece: then the note below says so)
        ids = arq_ids(path, text)
        if ids != sp_ids:
            print(f"     note: ar-quant's tokenizer of the .gguf gives {len(ids)} ids, sentencepiece {len(sp_ids)}")
        try:
            ref, n = llama_cpp_ppl(path, ids, bos)
        except Exception as e:  # noqa: BLE001 — report any loader failure
            report("FAIL", f"{name} gguf:{preset}: llama.cpp loads it", f"{type(e).__name__}: {e}")
            continue
        ours = arq_eval(path, text)["perplexity"]
        rel = abs(ref - ours) / ours
        report("ok" if rel <= TOL and tuned else "FAIL", f"{name} gguf:{preset} iters {ITERS}: llama.cpp ppl",
               f"llama.cpp {ref:.4f} vs ar-quant {ours:.4f} ({n} tokens), rel {rel:.2e} (tol {TOL})")


def main():
    if not os.path.isdir(STORIES) or not os.path.exists(DATA):
        print("skipped: needs ../shared/models/stories260k and ../shared/data/tinystories-calib.txt")
        return 0
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        print(f"skipped: llama-cpp-python is not installed ({e})")
        return 0
    keep = os.environ.get("ARQ_REFWORK")
    work = keep or tempfile.mkdtemp(prefix="arq-gguf-tuned-")
    os.makedirs(work, exist_ok=True)
    try:
        cal, ev = stories_texts(work)
        check_model("stories260k", STORIES, cal, ev, work)
        for spec in filter(None, os.environ.get("ARQ_TUNED_MODELS", "").split(",")):
            parts = spec.split(":")
            folder = parts[0]
            check_model(os.path.basename(os.path.normpath(folder)), folder, parts[1] if len(parts) > 1 else cal,
                        parts[2] if len(parts) > 2 else ev, work)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    bad = sum(s == "FAIL" for s in results)
    print(f"{len(results) - bad} ok, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
