#!/usr/bin/python3
"""Train the tiny byte-level LM behind examples/tinylm, on public-domain English.

Text: the King James Bible (Debian's `bible-kjv`, printed by its `bible` program) and the
`fortunes` files. The Book of Revelation is held out: it is never trained on, and
examples/tinylm measures bits per byte on it. CPU only, fixed seed, Debian's python3-torch:

    sudo apt-get install -y python3-torch libopenblas0-pthread bible-kjv fortunes
    tools/train_tinylm.py                      # ~36 min on 2 cores
    tools/train_tinylm.py --fixtures-only      # re-derive test fixtures from the weights

Without OpenBLAS, Debian's torch multiplies with the reference BLAS: ~15x slower.
Writes examples/tinylm/tinylm.bin (weights, fp16), examples/tinylm/heldout.txt, and the
fixtures the tests compare against (tests/data/tinylm_*.npy).
"""
import argparse
import glob
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "tinylm"))
sys.path.insert(0, HERE)
import model as tinylm  # noqa: E402
import dump_traces  # noqa: E402

WEIGHTS = os.path.join(ROOT, "examples", "tinylm", "tinylm.bin")
HELDOUT = os.path.join(ROOT, "examples", "tinylm", "heldout.txt")
FIXTURES = os.path.join(ROOT, "tests", "data")
FIXTURE_PROMPT_BYTES = 96   # logits fixture: the first bytes of the held-out text
TRACE_POSITIONS = 160       # trace fixture: one layer's post-RoPE q, k, v
TRACE_LAYER = 1


def corpus():
    bible = subprocess.run(["bible", "-l0", "Gen1:1-Rev22:21"], check=True, capture_output=True).stdout
    split = bible.index(b"\nRevelation 1\n") + 1
    train, heldout = [bible[:split]], bible[split:]
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        if path.endswith((".dat", ".u8")) or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            train.append(f.read())
    return b"\n".join(train), heldout


def train(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    text, heldout = corpus()
    os.makedirs(os.path.dirname(HELDOUT), exist_ok=True)
    with open(HELDOUT, "wb") as f:
        f.write(heldout)
    data = torch.from_numpy(np.frombuffer(text, dtype=np.uint8).astype(np.int64))
    val = torch.from_numpy(np.frombuffer(heldout, dtype=np.uint8).astype(np.int64))
    cfg = tinylm.Config()
    model = tinylm.TinyLM(cfg)
    params = sum(p.numel() for p in model.parameters())
    print(f"{params} parameters, {len(text)} training bytes, {len(heldout)} held-out bytes", flush=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    n = cfg.context
    start = time.time()
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        starts = torch.randint(0, len(data) - n - 1, (args.batch,))
        batch = torch.stack([data[s:s + n + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 20 == 0 or step == args.steps - 1:
            elapsed = time.time() - start
            print(f"step {step:4d}  loss {loss.item():.3f}  ({loss.item() / math.log(2):.3f} bits/byte)  "
                  f"lr {lr:.2e}  {elapsed:6.0f} s", flush=True)
    tinylm.save(model, WEIGHTS)
    print(f"held-out bits/byte (fp16 weights, {n}-byte windows): {heldout_bpb(tinylm.load(WEIGHTS), val):.4f}")


@torch.no_grad()
def heldout_bpb(model, val):
    n = model.cfg.context
    total, count = 0.0, 0
    for s in range(0, len(val) - 1, n):
        chunk = val[s:s + n + 1]
        logits = model(chunk[None, :-1])
        total += F.cross_entropy(logits[0], chunk[1:], reduction="sum").item()
        count += len(chunk) - 1
    return total / count / math.log(2)


@torch.no_grad()
def write_fixtures():
    """Reference outputs of the PyTorch model, read by the C++ tests (no torch needed there)."""
    model = tinylm.load(WEIGHTS)
    with open(HELDOUT, "rb") as f:
        heldout = f.read()
    os.makedirs(FIXTURES, exist_ok=True)
    prompt = torch.tensor(list(heldout[:FIXTURE_PROMPT_BYTES]), dtype=torch.int64)
    logits = model(prompt[None])[0].numpy().astype("<f4")
    np.save(os.path.join(FIXTURES, "tinylm_logits.npy"), logits)
    tokens = torch.tensor(list(heldout[:TRACE_POSITIONS]), dtype=torch.int64)
    traces = dump_traces.capture(model, tokens[None], rope_theta=model.cfg.rope_theta)
    q, k, v = traces[TRACE_LAYER]
    for name, array in (("q", q), ("k", k), ("v", v)):
        np.save(os.path.join(FIXTURES, f"tinylm_layer{TRACE_LAYER}_{name}.npy"), array)
    print(f"fixtures: logits {logits.shape}, layer {TRACE_LAYER} traces q {q.shape} k {k.shape} v {v.shape}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fixtures-only", action="store_true", help="skip training; rewrite the test fixtures")
    args = parser.parse_args()
    if not args.fixtures_only:
        train(args)
    write_fixtures()


if __name__ == "__main__":
    main()
