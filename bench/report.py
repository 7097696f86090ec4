#!/usr/bin/env python3
"""Run deltaattn_bench and print hybrid/dense time ratios per shape (medians of repetitions).

    [DELTAATTN_BENCH_THREADS=T] bench/report.py BUILD_DIR/bench/deltaattn_bench [--repetitions 5] [--filter REGEX] [--json FILE]

Each hybrid case is paired with the dense case of the same stage and shape from the same
run; speedup = dense median time / hybrid median time. Each step's GB/s (bytes it reads
per second) is also printed as a share of memory/read, the roofline, and each prefill's
GFLOP/s (the dense multiply-adds, x 2, per second of its own time) as a share of
compute/fma, the FMA peak of the same threads. The expand/ cases
and delta_rows/ cases (bench_expand.cpp) get a table of their own: ns per 16-lane register
and the ratio to a plain load of the same bytes; so do the quant_rows/ cases
(bench_quant_rows.cpp): ns per code row of each pass over quantized rows.
The paired/decode/ cases (a hybrid step and the dense step of the same storage in turn,
each timed) get a table of their own: the median of their pairs' ratios, steadier on a
noisy host than a ratio of two cases timed apart.
--json writes every case with both times and the sparsity counters.
"""
import argparse
import json
import re
import subprocess
import sys


def run(binary, repetitions, bench_filter):
    cmd = [binary, "--benchmark_format=json", f"--benchmark_repetitions={repetitions}",
           "--benchmark_report_aggregates_only=true", "--benchmark_min_time=0.2",
           "--benchmark_enable_random_interleaving=true"]
    if bench_filter:  # the roofline cases always run
        cmd.append(f"--benchmark_filter=^memory/read|^compute/fma|{bench_filter}")
    print("running:", " ".join(cmd), file=sys.stderr)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def medians(results):
    """name -> the median aggregate (time in ns, counters)."""
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
    table = {}
    for b in results["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        entry = dict(b)
        entry["time_ns"] = b["real_time"] * scale[b["time_unit"]]
        table[b["run_name"]] = entry
    return table


def pair(table):
    """Each hybrid case with the dense case of its stage, shape and storage; each f16
    dense case (variant dense_f16) with the fp32 dense case of its stage and shape."""
    rows = []
    for name, hybrid in sorted(table.items()):
        m = re.match(r"(prefill|decode|crossover)/(hybrid[^/]*(?:/rho:\d+)?|quant_kv?/bits:\d+(?:/q:int8)?|dense)(/n:\d+/d:\d+)(/kv:f16)?(/t:\d+)?$", name)
        if not m:
            continue
        stage, variant, shape, f16, threads = m.groups()
        f16, threads = f16 or "", threads or ""
        if variant == "dense":
            if not f16:
                continue
            variant, f16 = "dense_f16", ""  # against fp32 dense
        elif f16:
            variant += "_f16"
        dense = table.get(f"{stage}/dense{shape}{f16}{threads}")
        shape += threads
        if dense is None:
            continue
        rows.append({
            "stage": stage, "variant": variant, "shape": shape.strip("/"),
            "dense_ns": dense["time_ns"], "hybrid_ns": hybrid["time_ns"],
            "speedup": dense["time_ns"] / hybrid["time_ns"],
            "attention_sparsity": hybrid.get("attention_sparsity"),
            "value_sparsity": hybrid.get("value_sparsity"),
            "total_sparsity": hybrid.get("total_sparsity"),
            "delta_sparsity": hybrid.get("delta_sparsity"),
            "cache_bytes_hybrid": hybrid.get("cache_bytes"), "cache_bytes_dense": dense.get("cache_bytes"),
            "gbytes_per_s_hybrid": (hybrid.get("cache_bytes_per_s") or 0) / 1e9,
            "gbytes_per_s_dense": (dense.get("cache_bytes_per_s") or 0) / 1e9,
            "gmacs_per_s_hybrid": (hybrid.get("macs_per_s") or 0) / 1e9,
            "gmacs_per_s_dense": (dense.get("macs_per_s") or 0) / 1e9,
            "arch": hybrid.get("label"),
        })
    return rows


def expand_rows(table):
    """Each expand/<form>/<type>/kept:<k> case (and each delta_rows/<loop>/... case, the
    decode kernels' loops around the expansion) with its ns per group and its ratio to
    expand/load of the same type and kept share."""
    rows = []
    for name, case in sorted(table.items()):
        m = re.match(r"(expand/[^/]+|delta_rows/[^/]+)/(f32|f16)/kept:(\d+)$", name)
        if not m or m.group(1) == "expand/load":
            continue
        form, kind, kept = m.groups()
        form = form.removeprefix("expand/")
        load = table.get(f"expand/load/{kind}/kept:{kept}")
        ns = case["time_per_group"] * 1e9
        rows.append({"form": form, "type": kind, "kept": int(kept), "ns_per_group": ns,
                     "load_ns_per_group": load["time_per_group"] * 1e9 if load else None,
                     "label": case.get("label")})
    return rows


def code_row_passes(table):
    """Each quant_rows/<pass>/bits:<b> case: ns per code row (all heads of its KV head)."""
    rows = []
    for name, case in sorted(table.items()):
        m = re.match(r"quant_rows/([^/]+)/bits:(\d+)$", name)
        if m:
            rows.append({"pass": m.group(1), "bits": int(m.group(2)), "ns_per_row": case["time_per_row"] * 1e9,
                         "label": case.get("label")})
    return rows


def paired_rows(table):
    """Each paired/decode/<variant>/... case (a hybrid step and the dense step of the same
    storage run in turn, bench_attention.cpp): the median over repetitions of its median
    pair ratio, and of its median step times."""
    rows = []
    for name, case in sorted(table.items()):
        m = re.match(r"paired/(decode)/(.+?)(/n:\d+/d:\d+)(/kv:f16)?(/t:\d+)?/manual_time$", name)
        if not m:
            continue
        stage, variant, shape, f16, threads = m.groups()
        rows.append({"stage": stage, "variant": variant + ("_f16" if f16 else ""), "shape": (shape + (threads or "")).strip("/"),
                     "dense_us": case.get("dense_us"), "hybrid_us": case.get("hybrid_us"), "speedup": case.get("speedup"),
                     "attention_sparsity": case.get("attention_sparsity"), "delta_sparsity": case.get("delta_sparsity")})
    return rows


def prefill_rows(table, rows):
    """Each prefill case: its time, and the dense case's multiply-adds x 2 per second of
    that time (the work a dense prefill of that shape does)."""
    out = []
    for name, case in sorted(table.items()):
        m = re.match(r"prefill/(.+?)(/n:\d+/d:\d+(?:/t:\d+)?)$", name)
        if not m:
            continue
        variant, shape = m.groups()
        dense = table.get(f"prefill/dense{shape}")
        if dense is None or not dense.get("macs_per_s"):
            continue
        dense_flops = 2 * dense["macs_per_s"] * dense["time_ns"] / 1e9
        out.append({"variant": variant, "shape": shape.strip("/"), "ms": case["time_ns"] / 1e6,
                    "gflops": dense_flops / case["time_ns"]})
    return out


def pct(gbs, read_gbs):
    return f"{100 * gbs / read_gbs:.0f}%" if read_gbs else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--filter", default="")
    ap.add_argument("--json", help="write every paired case here")
    args = ap.parse_args()

    results = run(args.binary, args.repetitions, args.filter)
    table = medians(results)
    rows = pair(table)
    labels = [r["arch"] for r in rows] + [case.get("label") for case in table.values()]
    arch = next((a for a in labels if a), "?")
    read = next((v for k, v in table.items() if k.startswith("memory/read")), None)
    read_gbs = (read or {}).get("cache_bytes_per_s", 0) / 1e9
    print(f"deltaattn hybrid vs dense, arch {arch}, medians of {args.repetitions} "
          f"({results['context'].get('num_cpus')} cpus, {results['context'].get('host_name')})")
    if read_gbs:
        print(f"roofline: a plain read of 512 MiB streams {read_gbs:.1f} GB/s ('% read' below: a case's GB/s as a share of it)")
    print(f"{'stage':9} {'variant':21} {'shape':14} {'dense':>11} {'hybrid':>11} {'speedup':>8} "
          f"{'attn sp.':>8} {'value sp.':>9} {'total sp.':>9} {'bytes':>6} {'dense GB/s':>10} {'% read':>6} "
          f"{'hybrid GB/s':>11} {'% read':>6}")
    for r in rows:
        unit = 1e6 if r["stage"] == "prefill" else 1e3
        suffix = "ms" if r["stage"] == "prefill" else "us"
        bratio = (r["cache_bytes_hybrid"] or 0) / (r["cache_bytes_dense"] or 1)
        print(f"{r['stage']:9} {r['variant']:21} {r['shape']:14} {r['dense_ns'] / unit:9.2f}{suffix} "
              f"{r['hybrid_ns'] / unit:9.2f}{suffix} {r['speedup']:7.2f}x {100 * (r['attention_sparsity'] or 0):7.1f}% "
              f"{100 * (r['value_sparsity'] or 0):8.1f}% {100 * (r['total_sparsity'] or 0):8.1f}% {bratio:5.2f}x "
              f"{r['gbytes_per_s_dense']:10.1f} {pct(r['gbytes_per_s_dense'], read_gbs):>6} "
              f"{r['gbytes_per_s_hybrid']:11.1f} {pct(r['gbytes_per_s_hybrid'], read_gbs):>6}")
    fma = next((v for k, v in table.items() if k.startswith("compute/fma")), None)
    peak = (fma or {}).get("flops_per_s", 0) / 1e9
    prefills = prefill_rows(table, rows)
    if prefills:
        print(f"\nprefill against the FMA peak: compute/fma {peak:.0f} GFLOP/s; GFLOP/s = the dense case's "
              f"multiply-adds x 2 per second (for hybrid cases: dense-equivalent)")
        print(f"{'variant':21} {'shape':14} {'time':>10} {'GFLOP/s':>8} {'% peak':>6}")
        for p in prefills:
            print(f"{p['variant']:21} {p['shape']:14} {p['ms']:8.2f}ms {p['gflops']:8.1f} {pct(p['gflops'], peak):>6}")
    paired = paired_rows(table)
    if paired:
        print("\ndecode steps timed in pairs (hybrid and dense in turn): speedup = median of the pairs' ratios")
        print(f"{'variant':21} {'shape':14} {'dense':>11} {'hybrid':>11} {'speedup':>8} {'attn sp.':>8} {'delta sp.':>9}")
        for r in paired:
            print(f"{r['variant']:21} {r['shape']:14} {r['dense_us']:9.2f}us {r['hybrid_us']:9.2f}us {r['speedup']:7.2f}x "
                  f"{100 * (r['attention_sparsity'] or 0):7.1f}% {100 * (r['delta_sparsity'] or 0):8.1f}%")
    expands = expand_rows(table)
    if expands:
        print(f"\nexpansion of one register of a delta row ({expands[0]['label']}): ns per group, and x a plain load")
        print(f"{'form':22} {'type':4} {'kept':>5} {'ns/group':>9} {'x load':>7}")
        for e in expands:
            ratio = f"{e['ns_per_group'] / e['load_ns_per_group']:6.2f}x" if e["load_ns_per_group"] else "-"
            print(f"{e['form']:22} {e['type']:4} {e['kept']:4}% {e['ns_per_group']:9.2f} {ratio:>7}")
    passes = code_row_passes(table)
    if passes:
        print(f"\ncode-row passes, cache in L2 ({passes[0]['label']}): ns per code row, 4 query heads")
        print(f"{'pass':14} {'bits':>4} {'ns/row':>7}")
        for c in passes:
            print(f"{c['pass']:14} {c['bits']:4} {c['ns_per_row']:7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"context": results["context"], "read_gbytes_per_s": read_gbs, "fma_gflops_per_s": peak, "cases": rows,
                       "prefill": prefills, "paired": paired, "expand": expands, "code_row_passes": passes}, f, indent=1)
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
