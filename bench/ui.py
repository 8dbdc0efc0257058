"""Measures the web UI on loopback (issue 11's figures), with release shoal nodes and headless
Chromium through WebDriver (Debian's chromium, chromium-driver, python3-selenium):

  1. page weight: bytes transferred for the first load (the page and its assets);
  2. time to first list: from navigation start to the first row of the files table;
  3. the downloading node's peak RSS while a 1 GiB download runs with the downloads view open,
     against the same download with no page open (measured in the same run);
  4. the UI's update rate during that download (download events the page received per second);
  5. the node's CPU while a page is left open on the downloads view with nothing happening.

    /usr/bin/python3 bench/ui.py SHOAL_BINARY [--size-mib N] [--idle-seconds S]

Prints a Markdown table on stdout; the log goes to stderr. Loopback only; every wait bounded.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

SECRET = "bench-secret"


def log(text):
    print(f"[ui-bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def serve(binary, share, state, extra=()):
    proc = subprocess.Popen([binary, "serve", "--dir", share, "--state", state, "--listen", "127.0.0.1:0",
                             "--secret", SECRET, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("listening on "):
            return proc, line.split()[-1]
    proc.kill()
    raise SystemExit("a node printed no address")


def request(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"authorization": f"Bearer {SECRET}",
                                                          "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read() or b"null")


def wait_indexed(url, name):
    deadline = time.time() + 600
    while time.time() < deadline:
        files = request(f"{url}/api/v1/files")["files"]
        if any(f["path"] == name for f in files):
            return
        time.sleep(0.2)
    raise SystemExit(f"{name} was not indexed in time")


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def reset_peak(pid):
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def download(url, name, done_by):
    request(f"{url}/api/v1/downloads", {"targets": [name], "force": True})
    deadline = time.time() + done_by
    while time.time() < deadline:
        rows = request(f"{url}/api/v1/downloads")
        row = next((r for r in rows if r["name"] == name), None)
        if row and row["state"] == "done":
            return
        if row and row["state"] == "failed":
            raise SystemExit(f"the download failed: {row['detail']}")
        time.sleep(0.1)
    raise SystemExit("the download did not finish in time")


def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 # Nothing leaves loopback: no name is resolved but localhost, no pings, no
                 # safe-browsing or translation look-ups.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1", "--no-pings",
                 "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                 "--disable-features=Translate,OptimizationHints,MediaRouter", "--dns-prefetch-disable", "--disable-sync"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--idle-seconds", type=int, default=30)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="shoal-ui-bench.")
    procs = []
    driver = None
    try:
        holder_share, mine_share = os.path.join(tmp, "holder"), os.path.join(tmp, "mine")
        os.makedirs(holder_share)
        os.makedirs(mine_share)
        big = os.path.join(holder_share, "big.bin")
        with open(big, "wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(1 << 20))
        for i in range(200):
            with open(os.path.join(mine_share, f"file-{i:03}.txt"), "w") as out:
                out.write(f"file {i}\n")
        holder, holder_url = serve(args.binary, holder_share, os.path.join(tmp, "hs"))
        procs.append(holder)
        mine, url = serve(args.binary, mine_share, os.path.join(tmp, "ms"), ["--peer", holder_url])
        procs.append(mine)
        wait_indexed(holder_url, "big.bin")
        wait_indexed(url, "file-199.txt")
        log(f"nodes up: {url} downloads from {holder_url}")

        # 3a. The download with no page open (the anchor for memory).
        reset_peak(mine.pid)
        started = time.time()
        download(url, "big.bin", 600)
        bare_seconds = time.time() - started
        bare_rss = peak_rss_kib(mine.pid)
        os.remove(os.path.join(mine_share, "big.bin"))
        log(f"without a page: {bare_seconds:.2f} s, peak RSS {bare_rss} KiB")

        driver = browser()
        # 1 and 2. First load: bytes transferred and time to the first listed file.
        driver.get(url + "/")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return document.querySelectorAll('#files-table tbody tr td.num').length > 0"))
        listed_ms = driver.execute_script("return performance.now()")
        weight, data = driver.execute_script("""
            const nav = performance.getEntriesByType('navigation')[0];
            let assets = nav.transferSize, data = 0;
            for (const r of performance.getEntriesByType('resource')) {
              if (r.initiatorType === 'fetch' || r.initiatorType === 'xmlhttprequest') data += r.transferSize;
              else assets += r.transferSize;
            }
            return [assets, data];""")
        log(f"page weight {weight} B (+ {data} B of API answers), first list after {listed_ms:.0f} ms")

        # 3b, 4. The same download with the downloads view open. The page logs in through the
        # API (the cookie is the browser's own, the token goes where the page keeps it), reloads,
        # and counts the events its own stream delivers (fetch wrapped before the page's script
        # runs: the page reads its streams with fetch, since EventSource cannot send headers).
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
            window.__events = 0;
            const original = window.fetch;
            window.fetch = async (...args) => {
              const response = await original(...args);
              if (!String(args[0]).includes('/api/v1/downloads/events') || !response.body) return response;
              const [mine, theirs] = response.body.tee();
              (async () => {
                const reader = mine.pipeThrough(new TextDecoderStream()).getReader();
                let partial = '';
                for (;;) {
                  const { value, done } = await reader.read();
                  if (done) break;
                  const lines = (partial + value).split('\\n');
                  partial = lines.pop();
                  window.__events += lines.filter((l) => l === 'event: downloads').length;
                }
              })();
              return new Response(theirs, { status: response.status, headers: response.headers });
            };"""})
        status = driver.execute_script(f"""
            return fetch('/api/v1/login', {{method: 'POST', headers: {{'content-type': 'application/json'}},
                         body: JSON.stringify({{secret: '{SECRET}'}})}})
              .then(r => r.json().then(b => {{ sessionStorage.setItem('shoal.session', b.token); return r.status; }}))""")
        assert status == 200, status
        driver.get(url + "/#downloads")
        driver.refresh()
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.__events >= 1"))
        driver.execute_script("window.__events = 0")
        reset_peak(mine.pid)
        started = time.time()
        download(url, "big.bin", 600)
        ui_seconds = time.time() - started
        ui_rss = peak_rss_kib(mine.pid)
        events = driver.execute_script("return window.__events")
        rate = events / ui_seconds
        log(f"with the page: {ui_seconds:.2f} s, peak RSS {ui_rss} KiB, {events} events ({rate:.2f}/s)")

        # 5. Idle: the page stays open on the downloads view; nothing happens.
        driver.get(url + "/#downloads")
        time.sleep(2)
        before = cpu_seconds(mine.pid)
        time.sleep(args.idle_seconds)
        idle = (cpu_seconds(mine.pid) - before) / args.idle_seconds * 100
        log(f"idle CPU with the page open: {idle:.2f}%")

        print("| figure | value |")
        print("| --- | --- |")
        print(f"| page weight, first load: the page and its assets | {weight} bytes |")
        print(f"| the API answers of the first load (the first page of 200 files) | {data} bytes |")
        print(f"| time to first list (navigation start to first file row) | {listed_ms:.0f} ms |")
        print(f"| {args.size_mib} MiB download, no page open | {bare_seconds:.2f} s, peak RSS {bare_rss / 1024:.1f} MiB |")
        print(f"| the same with the downloads view open | {ui_seconds:.2f} s, peak RSS {ui_rss / 1024:.1f} MiB ({ui_rss / bare_rss:.2f}x) |")
        print(f"| UI updates during the download | {events} events in {ui_seconds:.1f} s ({rate:.2f}/s) |")
        print(f"| node CPU, page open, idle ({args.idle_seconds} s) | {idle:.2f}% of one core |")
    finally:
        if driver:
            driver.quit()
        for proc in procs:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
