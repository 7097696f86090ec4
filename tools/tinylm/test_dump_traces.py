#!/usr/bin/python3
"""tools/dump_traces.py on the tiny model: its hooks + RoPE give exactly the post-RoPE
q, k, v the model's own attention computes, and its command line writes them in
deltaattn-eval's layout. Exits 77 (CTest: skipped) when torch is not installed."""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"SKIPPED: {e} (Debian: apt-get install python3-torch)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import dump_traces  # noqa: E402
import model as tinylm  # noqa: E402

WEIGHTS = os.path.join(ROOT, "examples", "tinylm", "tinylm.bin")
TEXT = os.path.join(ROOT, "examples", "tinylm", "heldout.txt")


def internal_qkv(model, tokens):
    """What each Attention module computes after RoPE, recorded inside its forward."""
    for layer in model.model.layers:
        layer.self_attn.record = []
    with torch.no_grad():
        model(tokens)
    out = []
    for layer in model.model.layers:
        q, k, v = layer.self_attn.record[0]
        layer.self_attn.record = None
        out.append(tuple(t[0].transpose(0, 1).numpy() for t in (q, k, v)))  # [heads, n, d] -> [n, heads, d]
    return out


def check(condition, message):
    if not condition:
        print("FAILED:", message)
        sys.exit(1)


def main():
    failures = 0
    # A trained model and an untrained one with a different seed: hooks must not depend on the weights.
    torch.manual_seed(5)
    models = [("trained", tinylm.load(WEIGHTS)), ("random", tinylm.TinyLM(tinylm.Config()).eval())]
    with open(TEXT, "rb") as f:
        tokens = torch.tensor(list(f.read()[:200]), dtype=torch.int64)[None]
    for name, model in models:
        dumped = dump_traces.capture(model, tokens)
        expected = internal_qkv(model, tokens)
        check(len(dumped) == model.cfg.n_layers, f"{name}: {len(dumped)} layers dumped")
        for i, (got, want) in enumerate(zip(dumped, expected)):
            for label, g, w in zip("qkv", got, want):
                check(g.shape == w.shape and g.dtype == np.float32, f"{name} layer {i} {label}: shape {g.shape} vs {w.shape}")
                err = float(np.abs(g - w).max())
                check(err <= 1e-5, f"{name} layer {i} {label}: max |dump - model| = {err}")
        print(f"{name}: {len(dumped)} layers of q, k, v equal the model's own post-RoPE tensors")

    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, os.path.join(ROOT, "tools", "dump_traces.py"), "--tinylm", WEIGHTS, "--text", TEXT,
               "--positions", "64", "--layers", "0,3", "--out", out]
        subprocess.run(cmd, check=True, capture_output=True)
        check(sorted(os.listdir(out)) == sorted(f"layer{i}_{x}.npy" for i in (0, 3) for x in "qkv"), f"files: {os.listdir(out)}")
        cfg = models[0][1].cfg
        check(np.load(os.path.join(out, "layer3_q.npy")).shape == (64, cfg.n_heads, cfg.head_dim), "layer3_q shape")
        check(np.load(os.path.join(out, "layer0_k.npy")).shape == (64, cfg.n_kv_heads, cfg.head_dim), "layer0_k shape")
        bad = subprocess.run(cmd[:-4] + ["--layers", "9", "--out", out], capture_output=True, text=True)
        check(bad.returncode != 0 and "--layers" in bad.stderr, f"an out-of-range layer is refused by name: {bad.stderr}")
    print("command line: files, shapes and a bad --layers checked")
    return failures


if __name__ == "__main__":
    sys.exit(main())
