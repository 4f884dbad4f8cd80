"""ar-quant logits vs transformers' AutoModelForCausalLM, in f32.

For every implemented family (and a few config variants: biases, RoPE scaling types, sliding
window, tied embeddings, explicit head_dim) a tiny random model is made by `ar-quant
make-model --config`, both sides score the same ids (BOS + the first seqlen-1 tokens of a
text), and ar-quant's `eval --dump_logits` must match transformers within a max relative
error of 1e-4 (max |a - b| / max |b| over the whole [tokens, vocab] matrix, which is robust
to logits near zero). The same for the real stories260k model when ../shared has it.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import sentencepiece as spm
import torch
from transformers import AutoModelForCausalLM

BIN = os.environ["ARQ_BIN"]
SHARED = os.environ.get("ARQ_SHARED_DIR", "")
STORIES = os.path.join(SHARED, "models", "stories260k")
TOL = 1e-4

TEXT = ("Once upon a time, there was a little robot named Bolt. Bolt liked to count the stars every night. "
        "One evening a small bird landed on his arm and asked him why he counted. Bolt said that numbers made him "
        "happy, and the bird laughed and sang a song about the moon, the sea and the quiet green hills. ") * 4


def base(model_type, **extra):
    c = {
        "model_type": model_type,
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "initializer_range": 0.2,
    }
    c.update(extra)
    return c


CASES = {
    "llama": base("llama"),
    "llama-bias": base("llama", attention_bias=True, mlp_bias=True),
    "llama-rope-llama3": base("llama", rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
    "llama-rope-linear": base("llama", rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "llama-rope-dynamic": base("llama", max_position_embeddings=32, rope_scaling={"rope_type": "dynamic", "factor": 2.0}),
    "llama-rope-yarn": base("llama", rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                   "original_max_position_embeddings": 64}),
    "mistral-window": base("mistral", sliding_window=16),
    "qwen2": base("qwen2", tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6),
    "qwen3": base("qwen3", head_dim=24, rope_theta=1e6, rms_norm_eps=1e-6),
}


def ids_for(seqlen):
    sp = spm.SentencePieceProcessor(model_file=os.path.join(STORIES, "tokenizer.model"))
    ids = sp.encode(TEXT)
    return [1] + ids[: seqlen - 1]


def arq_logits(model_dir, text_file, seqlen, out):
    subprocess.run([BIN, "eval", "--model", model_dir, "--text", text_file, "--seqlen", str(seqlen),
                    "--max_chunks", "1", "--dump_logits", out], check=True, stdout=subprocess.DEVNULL)
    return np.fromfile(out, dtype="<f4")


def hf_logits(model_dir, ids):
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def compare(name, model_dir, text_file, seqlen, tmp):
    ids = ids_for(seqlen)
    ours = arq_logits(model_dir, text_file, seqlen, os.path.join(tmp, name + ".bin"))
    ref = hf_logits(model_dir, ids)
    if ours.size != ref.size:
        print(f"FAIL {name}: ar-quant wrote {ours.size} logits, transformers has {ref.shape}")
        return False
    ours = ours.reshape(ref.shape)
    err = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
    ok = err <= TOL
    print(f"{'ok  ' if ok else 'FAIL'} {name:22s} logits {list(ref.shape)}  max rel err {err:.2e} (tol {TOL:.0e})")
    return ok


def main():
    if not os.path.exists(os.path.join(STORIES, "tokenizer.model")):
        print("skipped: the stories260k tokenizer (../shared/models/stories260k) is needed for the ids")
        return 0
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        text_file = os.path.join(tmp, "text.txt")
        with open(text_file, "w") as f:
            f.write(TEXT)
        for seed, (name, cfg) in enumerate(CASES.items()):
            cdir = os.path.join(tmp, name)
            os.makedirs(cdir)
            cfg_file = os.path.join(tmp, name + ".json")
            with open(cfg_file, "w") as f:
                json.dump(cfg, f)
            subprocess.run([BIN, "make-model", "--config", cfg_file, "--output_dir", cdir, "--seed", str(seed + 1),
                            "--tokenizer", STORIES], check=True, stdout=subprocess.DEVNULL)
            ok &= compare(name, cdir, text_file, 48, tmp)
        ok &= compare("stories260k", STORIES, text_file, 200, tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
