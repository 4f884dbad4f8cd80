"""Mixed bits per layer read by a real client (issue 7; spec/autoround.md §4a `extra_config`,
§4b `dynamic`), on stories260k.

`ar-quant quantize --iters 0 --bits 4 --group_size 64` with
    --layer_config "{q_proj:{bits:8,group_size:32}, v_proj:{bits:2}}"
    --fp_layers model.layers.0.self_attn.o_proj
writes, with --sym, auto_round (packing_format "auto_round:auto_gptq", loaded by auto-round's
auto_round:torch_zp on CPU) and auto_gptq folders, and with --asym an auto_round folder (mixed
bits, asym: packing_format "auto_round", raw zero points, auto-round's auto_round:torch; an asym
GPTQ folder has no CPU backend in this venv, see check_ark_exports.py). stories260k's MLP
linears, 172 wide, stay 16-bit by shape. transformers + auto-round load each folder (auto_round:
its own QuantLinear from `extra_config`; auto_gptq: `quantization_config=AutoRoundConfig()`,
which turns GPTQModel's `dynamic` into per-layer settings). Checked:
  - every linear the client built has the bits / group size / sym the layer_config asks for
    (q_proj 8/32, v_proj 2/64, k_proj and o_proj 4/64; block 0's o_proj and the MLP stay
    nn.Linear), so the client really read extra_config / dynamic;
  - its perplexity on the same text, with ar-quant's protocol (check_exports.py), matches
    `ar-quant eval` of the same folder within 0.5%;
  - ar-quant reads the sym auto_round and auto_gptq folders (same codes, two packings) to the
    same perplexity.

    ARQ_BIN=build/apps/ar-quant .refcheck/bin/python tests/reference/check_mixed_bits.py
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_exports as ce  # noqa: E402  (shared text/ids/perplexity helpers)

LAYER_CONFIG = "{q_proj:{bits:8,group_size:32}, v_proj:{bits:2}}"
FP_LAYER = "model.layers.0.self_attn.o_proj"
BASE = {"bits": 4, "group_size": 64}
VARIANTS = [("sym", "auto_round,auto_gptq"), ("asym", "auto_round")]
PACKING = {"sym": "auto_round:auto_gptq", "asym": "auto_round"}  # §4a table: auto_round's packing_format

results = []


def report(status, what, detail):
    results.append((status, what, detail))
    print(f"{status:4s} {what:44s} {detail}", flush=True)


def expected_scheme(name, sym):
    """(bits, group_size, sym) the layer_config asks for, or None for a layer kept in 16 bits."""
    if name == FP_LAYER or ".mlp." in name or not name.startswith("model.layers."):
        return None
    if name.endswith("q_proj"):
        return (8, 32, sym)
    if name.endswith("v_proj"):
        return (2, BASE["group_size"], sym)
    return (BASE["bits"], BASE["group_size"], sym)


def check_folder(label, folder, text, ids, variant):
    import torch
    from transformers import AutoModelForCausalLM, AutoRoundConfig

    sym = variant == "sym"
    with open(os.path.join(folder, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    method = qc["quant_method"]
    if method == "auto-round" and qc.get("packing_format") != PACKING[variant]:
        report("FAIL", f"{label} packing_format", f"{qc.get('packing_format')!r}, want {PACKING[variant]!r}")
    picked = []  # auto-round's "Inference backend selection: ... selected=X"

    class Grab(logging.Handler):
        def emit(self, record):
            m = re.search(r"selected=(\S+)", record.getMessage())
            if m:
                picked.append(m.group(1))
    grab = Grab()
    logging.getLogger("autoround").addHandler(grab)
    kw = {} if method == "auto-round" else {"quantization_config": AutoRoundConfig()}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, device_map="cpu", **kw)
    finally:
        logging.getLogger("autoround").removeHandler(grab)
    model.eval()
    # Per-layer schemes as the client built them.
    wrong, kinds = [], set()
    for name, m in model.named_modules():
        if not name.startswith("model.layers.") or not name.endswith("_proj"):
            continue
        want = expected_scheme(name, sym)
        if want is None:
            if type(m) is not torch.nn.Linear:
                wrong.append(f"{name}: want nn.Linear (16-bit), got {type(m).__name__}")
            continue
        kinds.add(type(m).__name__)
        got = (getattr(m, "bits", None), getattr(m, "group_size", None), getattr(m, "sym", want[2]))
        if got != want:
            wrong.append(f"{name}: want bits/group/sym {want}, client built {type(m).__name__} with {got}")
    backend = picked[-1] if picked else "?"
    if wrong:
        report("FAIL", f"{label} [{method}] layer schemes", "; ".join(wrong[:6]) + (" ..." if len(wrong) > 6 else ""))
    else:
        report("ok", f"{label} [{method}] layer schemes",
               f"q_proj 8/32, v_proj 2/{BASE['group_size']}, k/o_proj 4/{BASE['group_size']}, {FP_LAYER} and MLP "
               f"16-bit (backend {backend}: {', '.join(sorted(kinds))})")
    ref, n = ce.torch_ppl(model, ids)
    ours = ce.arq_eval(folder, text)
    rel = abs(ref - ours["perplexity"]) / ref
    status = "ok" if rel <= ce.HF_TOL and n == ours["tokens"] else "FAIL"
    report(status, f"{label} [{method}] perplexity",
           f"transformers {ref:.4f} vs ar-quant {ours['perplexity']:.4f} ({n} vs {ours['tokens']} tokens), "
           f"rel {rel:.2e} (tol {ce.HF_TOL})")
    return ours["perplexity"]


def main():
    if not os.path.exists(os.path.join(ce.MODEL, "config.json")) or not os.path.exists(ce.DATA):
        print("skipped: needs ../shared/models/stories260k and ../shared/data/tinystories-calib.txt")
        return 0
    import torch
    torch.set_num_threads(2)
    keep = "ARQ_REFWORK" in os.environ
    work = os.environ.get("ARQ_REFWORK") or tempfile.mkdtemp(prefix="arq-mixed-")
    os.makedirs(work, exist_ok=True)
    try:
        text = ce.eval_text(work)
        ids = ce.text_ids(text)
        fp = ce.arq_eval(ce.MODEL, text)
        print(f"text: {len(ids)} ids; FP ar-quant perplexity {fp['perplexity']:.4f}")
        ppl = {}
        for vname, formats in VARIANTS:
            out = os.path.join(work, f"out_mixed_{vname}")
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run([ce.BIN, "quantize", "--model", ce.MODEL, "--iters", "0", "--bits", str(BASE["bits"]),
                            "--group_size", str(BASE["group_size"]), f"--{vname}", "--layer_config", LAYER_CONFIG,
                            "--fp_layers", FP_LAYER, "--format", formats, "--output_dir", out],
                           check=True, capture_output=True)
            root = glob.glob(os.path.join(out, "*"))[0]
            for fmt in formats.split(","):
                sub = os.path.join(root, fmt.replace(":", "-").replace("_", "-")) if "," in formats else root
                try:
                    ppl[(vname, fmt)] = check_folder(f"mixed {vname} {fmt}", sub, text, ids, vname)
                except Exception as e:
                    traceback.print_exc()
                    report("FAIL", f"mixed {vname} {fmt}", f"{type(e).__name__}: {e}")
        a, b = ppl.get(("sym", "auto_round")), ppl.get(("sym", "auto_gptq"))
        if a is not None and b is not None:
            # Same codes in two packings: ar-quant must read both to the same model.
            report("ok" if a == b else "FAIL", "mixed sym auto_round = auto_gptq (ar-quant)", f"{a:.6f} vs {b:.6f}")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    n_fail = sum(1 for s, _, _ in results if s == "FAIL")
    print(f"\n{len(results)} checks: {len(results) - n_fail} ok, {n_fail} failed")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
