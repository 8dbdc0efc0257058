"""Renders docs/RELIABILITY.md from the results that reliability/run.sh collects.

Usage: report.py RESULTS_DIR "SETTINGS"  (writes Markdown to standard output)
"""
import json
import os
import re
import sys
from datetime import datetime, timezone

out, settings = sys.argv[1], sys.argv[2]


def load(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def text(name):
    path = os.path.join(out, name)
    return open(path).read() if os.path.exists(path) else ""


def tests(name):
    """(passed, failed, names of failures) from libtest output."""
    lines = re.findall(r"^test (\S+) \.\.\. (ok|FAILED)", text(name), re.M)
    failed = [n for n, r in lines if r != "ok"]
    return len(lines) - len(failed), len(failed), failed


def held(flag):
    return {True: "yes", False: "**no**", None: "skipped"}[flag]


def ms(value):
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


rows = []  # (area, case, tried, times, held)

node_text = text("tests-node.txt")

suites = {
    "bad_input": ("hostile input", "path traversal in every spelling, symlinks out, malformed/truncated XML, entity expansion, external entities, deep nesting, oversized bodies, wrong types and arity, invalid and multiple ranges, slow-drip requests, 300 idle connections, fetch safety (crates/node/tests/bad_input.rs)"),
    "engine": ("download faults", "corrupting, stalling and dying sources, every source gone and back, resume after cancel, pieces lost on disk, existing targets, wrong ids (crates/node/tests/engine.rs)"),
    "interop": ("interop", "Python's xmlrpc client and a seed node written in Python, in mixed networks (crates/node/tests/interop.rs)"),
    "hostile": ("hostile peers", "a fake peer that lies in every field: sizes of 2^62 and near the truth, corrupt and endless verification data, redirects to a counting server, 5,000 holder URLs in many spellings, hidden and escaping names with terminal escapes, 16 endless answers, 2 × 40,000 holders for one match, lying locate hits (crates/node/tests/hostile.rs)"),
    "guard": ("strangers at the door", "cross-origin and text/plain requests, DNS rebinding, redaction of the owner's downloads, download directories, wrong secrets and search rates per caller, table floods, stalled readers holding every slot, freshness through the watcher, the symlink-swap race through query (crates/node/tests/guard.rs)"),
    "layers": ("architecture", "no module imports a layer above its own (crates/node/tests/layers.rs)"),
    "stranger_limits": ("strangers over iroh", "one key, one address and many keys filling iroh connections, connections with no stream, TCP and the owner's key while iroh is full, wrong secrets from many addresses (crates/node/tests/stranger_limits.rs)"),
}
for binary, (area, tried) in suites.items():
    section = re.search(rf"Running tests/{binary}\.rs.*?test result: [^\n]*", node_text, re.S)
    lines = re.findall(r"^test (\S+) \.\.\. (ok|FAILED)", section.group(0) if section else "", re.M)
    failed = [n for n, r in lines if r != "ok"]
    if lines:
        rows.append((area, f"{len(lines)} tests", tried, "1 run each", "yes" if not failed else "**no**: " + ", ".join(failed)))
passed, failed, failures = tests("tests-security.txt")
if passed + failed:
    rows.append(("multi-process security", f"{passed + failed} tests", "secrets from the state directory, SHOAL_SECRET or config.toml never sent to a foreign node, the state directory's modes, a readable config.toml warned about, a node under a 26-descriptor limit flooded with 200 connections (crates/shoal/tests/security.rs)", "1 run each", "yes" if not failed else "**no**: " + ", ".join(failures)))
passed, failed, failures = tests("tests-get.txt")
if passed + failed:
    rows.append(("multi-process", f"{passed + failed} tests", "shoal get SIGKILLed at 5 seeded moments and rerun, full disk on a small tmpfs, existing target, hand-over to a running node (crates/shoal/tests/get.rs)", "1 run each", "yes" if not failed else "**no**: " + ", ".join(failures)))

faults = load("faults.json") or []
for case in faults:
    rows.append(("fault rounds", case["case"], case["tried"] + (f". {case['notes']}" if case.get("notes") else ""), str(case["times"]), held(case.get("held"))))

strangers = load("strangers.json")
if strangers:
    h, a = strangers["hostile"], strangers["honest"]
    ratio = (h["peak_hwm"] / a["peak_hwm"]) if h.get("peak_hwm") and a.get("peak_hwm") else None
    rows.append((
        "hostile peers",
        f"{strangers['searches']} searches at once",
        f"{strangers['peers']} peers in the table answering every search without end: peak RSS {h['peak_hwm'] / 2**20:.0f} MiB, {ratio:.2f}× the same run with honest peers; failed searches {h['failed']}" if ratio else "peak RSS not measured",
        "1",
        "yes" if h["failed"] == 0 else f"**no**: {h['failed']} failed",
    ))
    fresh = sorted(strangers["fresh_search_ms"])
    if fresh:
        rows.append((
            "freshness",
            "write to a peer's search",
            f"a file written into a share with std::fs is found by a peer's shoal.search after {ms(fresh[len(fresh) // 2])} median, {ms(fresh[-1])} at most (the watcher, no rescan)",
            str(len(fresh)),
            "yes" if fresh[-1] < 2000 else "**no**",
        ))

load_figures = load("load.json")
if load_figures:
    d = load_figures["downloads"]
    rows.append((
        "load",
        "64 concurrent downloads",
        f"64 × {d['file_bytes'] >> 20} MiB from one node through the engine: {d['throughput_mib_per_s']:.0f} MiB/s together, completion min/median/max {ms(d['completion_min_ms'])} / {ms(d['completion_median_ms'])} / {ms(d['completion_max_ms'])} (max/median {d['max_over_median']:.2f}), peak RSS of node and downloads together {d['peak_rss_vmhwm_bytes'] / 2**20:.0f} MiB",
        "64",
        "yes" if d["errors"] == 0 else f"**no**: {d['errors']} errors",
    ))
    for s in load_figures.get("searches", []):
        rows.append((
            "load",
            f"{s['calls']:,} concurrent searches (round {s['round']})",
            f"median {ms(s['latency_median_ms'])}, p99 {ms(s['latency_p99_ms'])}, {s['searches_per_s']:.0f} searches/s",
            str(s["calls"]),
            "yes" if s["errors"] == 0 else f"**no**: {s['errors']} errors",
        ))
    rps = load_figures.get("small_files")
    if rps:
        rows.append((
            "load",
            "small files, requests/s",
            f"{rps['clients']} keep-alive clients GET 4 KiB files for {rps['duration_s']} s: shoal {rps['shoal_mean_rps']:.0f}/s, nginx {rps['nginx_mean_rps']:.0f}/s in the same run (shoal/nginx {rps['shoal_over_nginx']:.2f})",
            f"{len(rps['runs']) // 2} rounds" if isinstance(rps.get("runs"), list) else "1",
            "yes" if all(r.get("errors", 0) == 0 for r in rps.get("runs", []) if isinstance(r, dict)) else "**no**: errors",
        ))

scale = load("scale.json")
scale_rows = []
churn_rows = []
if scale:
    for net in scale["networks"]:
        name = f"{net['nodes']} nodes, {net['topology']} ({net['links']} links)"
        by_ttl = {}
        for s in net["search"]:
            by_ttl.setdefault(s["copies"], []).append(s)
        for copies, runs in sorted(by_ttl.items()):
            cells = " · ".join(
                f"ttl {r['ttl']}: {r['hit_rate'] * 100:.0f}% of {r['reachable_rate'] * 100:.0f}% ({r['messages_median']} msgs, {ms(r['latency_median_ms'])})"
                for r in sorted(runs, key=lambda r: r["ttl"])
            )
            scale_rows.append((name, copies, cells))
        c = net.get("churn")
        if c:
            churn_rows.append((name, c))

fuzz = text("fuzz.txt")
fuzz_rows = []
for target, stats in re.findall(r"== (\S+): \d+ s\n((?:(?!==).*\n)*)", fuzz):
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", stats) or re.search(r"Done (\d+) runs", stats)
    fuzz_rows.append((target, runs.group(1) if runs else "?"))

print("# Reliability and security results")
print()
finished = datetime.fromtimestamp(os.path.getmtime(os.path.join(out, "fuzz.txt")) if os.path.exists(os.path.join(out, "fuzz.txt")) else datetime.now().timestamp(), timezone.utc)
print("Generated by `reliability/run.sh` (" + settings + "); the suite finished " + finished.strftime("%Y-%m-%d %H:%M UTC") + ".")
print("Each row says what was tried, how many times, and whether every try held: the file was")
print("byte-identical or absent (never wrong), the node kept answering others, nothing outside the")
print("share was read or written, nothing in it was lost. The machine is a shared 2-core VM: the")
print("timings are of that run only; compare ratios, not absolute figures.")
print()
print("| area | case | what was tried | times | held |")
print("| --- | --- | --- | --- | --- |")
for area, case, tried, times, ok in rows:
    print(f"| {area} | {case} | {tried} | {times} | {ok} |")
print()
if scale_rows:
    print("## Search at scale (in-process networks)")
    print()
    print(f"Seed {scale.get('seed', '?')}; each node links to k = {scale.get('k', 4)} others (random) or is on a Watts–Strogatz ring (small-world, p = {scale.get('rewire_p', 0.1)}); one file at random holders; searches from random origins. Hit rate of the share of searches a perfect flood of that TTL could answer (median messages per search, median latency), by TTL:")
    print()
    print("| network | copies | by TTL |")
    print("| --- | --- | --- |")
    for name, copies, cells in scale_rows:
        print(f"| {name} | {copies} | {cells} |")
    print()
if churn_rows:
    print("## 20% of the nodes leave during a search")
    print()
    print("Searches (TTL 6) start together and a random 20% of the nodes shut down 10 ms later; the hit")
    print("rate counts only files whose holder survived, beside the share a perfect flood would reach. The")
    print("searches run at once, so their latency includes the load of all of them on the machine's cores.")
    print()
    print("| network | searches | hit rate (reachable) | latency median / p95 | errors / timeouts | shutdown took |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, c in churn_rows:
        print(f"| {name} | {c['searches']} | {c['hit_rate'] * 100:.0f}% ({c['reachable_rate'] * 100:.0f}%) | {ms(c['latency_median_ms'])} / {ms(c['latency_p95_ms'])} | {c['errors']} / {c['timeouts']} | {ms(c['shutdown_ms'])} |")
    print()
print("## Fuzzing")
print()
if fuzz_rows:
    ok = text("fuzz.rc").strip() == "0"
    print("| target | executions | crashes |")
    print("| --- | --- | --- |")
    for target, runs in fuzz_rows:
        print(f"| {target} | {runs} | {'0' if ok else 'see fuzz/artifacts'} |")
else:
    print(fuzz.strip() or "not run")
print()
