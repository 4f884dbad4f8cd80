"""AWQ-packed and asymmetric exports read by a real client on CPU (issue 7, "Real clients").

auto-round's only CPU kernels for the AWQ layout (`auto_awq`, and `auto_round` asym 4-bit, whose
packing_format is "auto_round:auto_awq") and for asym GPTQ (`auto_gptq --asym`, zero − 1) are
its `auto_round_kernel*` ("ark") backends from the auto-round-lib wheel, which needs a newer torch
than the .refcheck venv pins (auto-round-lib 0.16.0 requires torch >= 2.13; auto-round checks
torch >= 2.8). gptqmodel and autoawq publish only sdists (CUDA builds). So this script runs
in a second environment:

    (scripts/reference-check makes this venv as .refcheck-ark/ on first use; by hand:)
    python3 -m venv /path/venv-ark
    /path/venv-ark/bin/pip install torch==2.13.0 transformers==4.53.3 tokenizers==0.21.4 \
        safetensors==0.5.3 sentencepiece==0.2.0 numpy==2.2.6 auto-round==0.16.1 auto-round-lib==0.16.0
    ARQ_BIN=build/apps/ar-quant /path/venv-ark/bin/python tests/reference/check_ark_exports.py
    (scripts/reference-check runs it there when ARQ_ARK_PYTHON=/path/venv-ark/bin/python is set;
    under .refcheck's python it prints "skipped" and exits 0.)

For each folder: transformers + auto-round load it on CPU (auto-round picks the backend; the
one it picked is printed), and the perplexity on the same text with ar-quant's protocol
(check_exports.py) must match `ar-quant eval` of the same folder within 0.5%. Asym: auto_round
(packing "auto_round:auto_awq"), an explicit auto_round:auto_gptq (GPTQ layout, zero − 1),
auto_gptq and auto_awq; sym: auto_awq, plus auto_round / auto_gptq, which .refcheck already
checks with auto_round:torch_zp, as a control of the ark backend. Then check_mixed_bits.py's
mixed-bit folders once more, here through the ark kernels.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_exports as ce  # noqa: E402
import check_mixed_bits as cmb  # noqa: E402

VARIANTS = [  # (name, flags, formats)
    ("asym", ["--asym"], "auto_round,auto_round:auto_gptq,auto_gptq,auto_awq"),
    ("sym", ["--sym"], "auto_awq,auto_round,auto_gptq"),
]


def ark_available():
    try:
        import torch
        import auto_round_kernel  # noqa: F401  (auto-round-lib)
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    if (major, minor) < (2, 8):
        return f"torch {torch.__version__} < 2.8"
    return ""


def main():
    if not os.path.exists(os.path.join(ce.MODEL, "config.json")) or not os.path.exists(ce.DATA):
        print("skipped: needs ../shared/models/stories260k and ../shared/data/tinystories-calib.txt")
        return 0
    why = ark_available()
    if why:
        print(f"skipped: auto-round's CPU kernels for AWQ/asym (auto-round-lib, torch >= 2.8) are not in this "
              f"environment ({why}); run it with ARQ_ARK_PYTHON, see the docstring")
        return 0
    import torch
    import transformers
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    keep = "ARQ_REFWORK" in os.environ
    work = os.environ.get("ARQ_REFWORK") or tempfile.mkdtemp(prefix="arq-ark-")
    os.makedirs(work, exist_ok=True)
    try:
        text = ce.eval_text(work)
        ids = ce.text_ids(text)
        for vname, flags, formats in VARIANTS:
            out = os.path.join(work, f"out_{vname}")
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run([ce.BIN, "quantize", "--model", ce.MODEL, "--iters", "0", "--bits", "4", "--group_size", "32",
                            *flags, "--format", formats, "--output_dir", out], check=True, capture_output=True)
            root = glob.glob(os.path.join(out, "*"))[0]
            for fmt in formats.split(","):
                sub = os.path.join(root, fmt.replace(":", "-").replace("_", "-"))
                try:
                    ce.check_hf(f"{vname} {fmt}", sub, text, ids)
                except Exception as e:
                    traceback.print_exc()
                    ce.report("FAIL", f"{vname} {fmt}", f"{type(e).__name__}: {e}")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\n== mixed bits (check_mixed_bits.py) through this environment's backends")
    mixed_status = cmb.main()
    n_fail = sum(1 for s, _, _ in ce.results if s == "FAIL")
    n_skip = sum(1 for s, _, _ in ce.results if s == "SKIP")
    print(f"\nAWQ/asym exports: {len(ce.results)} checks: {len(ce.results) - n_fail - n_skip} ok, {n_fail} failed, "
          f"{n_skip} skipped; mixed bits: {'FAILED' if mixed_status else 'all ok'}")
    return 1 if n_fail or mixed_status else 0


if __name__ == "__main__":
    sys.exit(main())
