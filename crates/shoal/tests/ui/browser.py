"""The web UI in headless Chromium (Debian's chromium and chromium-driver), driven through
WebDriver by Selenium (Debian's python3-selenium), against real shoal nodes that ui.rs started.

    browser.py NODE_URL SECRET LOCAL_FILE REMOTE_FILE SLOW_FILE [SCREENSHOT_DIR]

NODE_URL shares LOCAL_FILE and knows a peer that holds REMOTE_FILE and SLOW_FILE (served slowly).
Checks, in order: the page lists the node's files; owner actions are refused without login; a
search finds a file only the peer holds; a click downloads it and its bar reaches 100%; a reload
keeps the session and another tab asks for the login; the session cookie, which the browser
sends to another web server on another port of the host, is not the owner when replayed alone;
a slow download is paused and resumed and reaches 100%; the peers view lists the peer and shows the DHT; logging
out forgets the session; no JavaScript error reached the console.
Every wait is bounded. Exit status 0 when every check held; the failure is printed otherwise.
"""

import http.server
import os
import sys
import threading
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BOUND = 60


def driver():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 # Nothing leaves loopback: no name is resolved but localhost, no pings, no
                 # safe-browsing or translation look-ups.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1", "--no-pings",
                 "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                 "--disable-features=Translate,OptimizationHints,MediaRouter", "--dns-prefetch-disable",
                 "--disable-sync", "--disable-default-apps", "--metrics-recording-only",
                 "--window-size=1100,800"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


class Catcher(http.server.BaseHTTPRequestHandler):
    """Another local web server on another port: it keeps the cookies the browser sends it."""

    cookies = []

    def do_GET(self):
        Catcher.cookies.extend(self.headers.get_all("Cookie") or [])
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"another site on this host\n")

    def log_message(self, *args):
        pass


def status_of(url, headers):
    """The status of a GET from outside the browser (another local user replaying what it caught)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=BOUND) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def main():
    url, secret, local, remote, slow = sys.argv[1:6]
    shots = sys.argv[6] if len(sys.argv) > 6 else None
    browser = driver()
    wait = WebDriverWait(browser, BOUND)

    def shot(name):
        if shots:
            browser.save_screenshot(os.path.join(shots, name))

    def visible(selector):
        return wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, selector)))

    def login():
        visible("#login-dialog[open]")
        browser.find_element(By.ID, "secret").send_keys(secret)
        browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
        wait.until(lambda b: not b.find_element(By.ID, "login-dialog").get_attribute("open"))

    def row(name):
        """The state and bar value of a download's item, read in one step."""
        return browser.execute_script(
            """for (const li of document.querySelectorAll('#downloads-list li')) {
                 const n = li.querySelector('.name');
                 if (n && n.textContent === arguments[0])
                   return {state: li.querySelector('.dl-head span:nth-child(2)').textContent,
                           value: li.querySelector('progress').value};
               }
               return null;""", name)

    def bar_reaches_100(name):
        wait.until(lambda b: (row(name) or {}).get("value") == 100 and (row(name) or {}).get("state") == "done")

    try:
        # 1. The page lists the node's own files.
        browser.get(url + "/")
        wait.until(lambda b: local in b.find_element(By.ID, "files-table").text)
        shot("files.png")

        # 2. Owner views ask for the login first: the downloads view opens the dialog and shows
        # nothing; a wrong secret is refused with a message.
        browser.get(url + "/#downloads")
        visible("#login-dialog[open]")
        browser.find_element(By.ID, "secret").send_keys("not-the-secret")
        browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
        wait.until(lambda b: b.find_element(By.ID, "login-error").text != "")
        assert browser.find_elements(By.CSS_SELECTOR, "#downloads-list li") == [], "downloads shown without login"
        browser.find_element(By.ID, "login-cancel").click()

        # 3. A search finds a file that only the peer holds, live.
        browser.get(url + "/#search")
        box = visible("#q")
        box.send_keys(remote)
        browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        wait.until(lambda b: remote in b.find_element(By.ID, "results-table").text)
        wait.until(lambda b: "found." in b.find_element(By.ID, "search-status").text)
        shot("search.png")

        # 4. One click downloads it (logging in when asked), and its bar reaches 100%.
        browser.find_element(By.CSS_SELECTOR, f"button[aria-label='Download {remote}']").click()
        login()
        wait.until(lambda b: b.current_url.endswith("#downloads"))
        bar_reaches_100(remote)

        # 4b. The browser sends the session cookie to another web server on another port of this
        # host (cookies ignore ports). Replayed alone, it is not the owner; with the page's token,
        # which never left the node's origin, it is (so what was caught is the real cookie).
        catcher = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Catcher)
        threading.Thread(target=catcher.serve_forever, daemon=True).start()
        browser.get(f"http://127.0.0.1:{catcher.server_address[1]}/api/v1/anything")
        wait.until(lambda b: "another site" in b.find_element(By.TAG_NAME, "body").text)
        catcher.shutdown()
        caught = "; ".join(Catcher.cookies)
        assert "shoal_" in caught, f"the browser sent no session cookie to the other port: {caught!r}"
        downloads = url + "/api/v1/downloads"
        assert status_of(downloads, {"Cookie": caught}) == 401, "the cookie alone was the owner"
        browser.get(url + "/#downloads")
        bar_reaches_100(remote)
        token = browser.execute_script("return sessionStorage.getItem('shoal.session')")
        assert token, "no session token in sessionStorage"
        assert status_of(downloads, {"Cookie": caught, "X-Shoal-Session": token}) == 200

        # 4c. A reload keeps the session (the tab's sessionStorage): the downloads show, no login.
        browser.refresh()
        bar_reaches_100(remote)
        assert not browser.find_element(By.ID, "login-dialog").get_attribute("open"), "a reload asked for the login"
        # Another tab has its own sessionStorage: it asks for the login.
        first_tab = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(url + "/#downloads")
        visible("#login-dialog[open]")
        browser.close()
        browser.switch_to.window(first_tab)

        # 5. A slow download: paused (its bar stops short of 100%), resumed, finished.
        browser.get(url + "/#search")
        box = visible("#q")
        box.clear()
        box.send_keys(slow)
        browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        button = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, f"button[aria-label='Download {slow}']")))
        button.click()
        pause = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, f"button[aria-label='Pause {slow}']")))
        wait.until(lambda b: (row(slow) or {}).get("value", 0) >= 15)
        shot("downloads.png")
        pause.click()
        resume = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, f"button[aria-label='Resume {slow}']")))
        paused = row(slow)
        assert paused and paused["state"] == "paused" and paused["value"] < 100, paused
        resume.click()
        bar_reaches_100(slow)
        shot("done.png")

        # 6. The peers view lists the peer this node was started with, as a shoal node.
        browser.get(url + "/#peers")
        wait.until(lambda b: "shoal" in b.find_element(By.ID, "peers-table").text)
        # The owner sees the node on the Mainline DHT there (it runs one: --dht-listen).
        wait.until(lambda b: "Mainline DHT:" in b.find_element(By.ID, "dht-state").text)
        dht = browser.find_element(By.ID, "dht-state").text
        assert " nodes · " in dht and "ids announced" in dht, dht
        shot("peers.png")

        # 7. Logging out ends the session and forgets the token.
        button = browser.find_element(By.ID, "login-button")
        assert button.text == "Log out", button.text
        button.click()
        wait.until(lambda b: b.find_element(By.ID, "login-button").text == "Log in")
        assert browser.execute_script("return sessionStorage.getItem('shoal.session')") is None
        assert status_of(downloads, {"Cookie": caught, "X-Shoal-Session": token}) == 401

        # 8. No JavaScript errors on the way (severe console entries; a refused login's 401/403
        # responses are logged by the browser as network errors, not script errors).
        errors = [e for e in browser.get_log("browser")
                  if e.get("level") == "SEVERE" and "status of 40" not in e.get("message", "")]
        assert not errors, f"console errors: {errors}"
    except Exception as error:  # report everything the test saw, then fail
        print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        print(browser.find_element(By.TAG_NAME, "body").text[:3000], file=sys.stderr)
        for entry in browser.get_log("browser"):
            print("console:", entry, file=sys.stderr)
        browser.quit()
        return 1
    browser.quit()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
