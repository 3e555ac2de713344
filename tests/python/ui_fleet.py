"""Drives ssfd's web UI (issue 20) in Debian's headless Chromium with Selenium 4, pointed
at a proxy in front of several globals.

Usage: ui_fleet.py BASE_URL EXPECTED_JSON            (the full walk)
       ui_fleet.py BASE_URL partial GLOBAL_ADDRESS   (a global is stopped)

EXPECTED_JSON: {"parent": service, "child": service, "operation": the child's span name,
                "calls": edge call count, "error_trace": trace id of the error trace,
                "error_span": its child span id, "message": the child span's log message,
                "word": a word of that message, "records": how many records match it}

The walk, checking the DOM at each step:
1. Services → the child's page: its operation has rate, error and duration charts.
2. A click on an error-chart point opens that minute's traces of the operation with
   errors first: the first row is the error trace.
3. That trace → the child span → its detail shows the log message, and the span's bar
   carries a log mark.
4. The service map has the parent → child edge with its call count; a click lists the
   traces that made it (every one has both services).
5. The log view: the volume histogram counts every matching record; a record's trace
   link opens the trace with its span highlighted and the record marked; a click on a
   histogram bar narrows the search to that bucket.
In `partial` mode: a trace search shows the partial banner naming the stopped global.
Exits 0 on success, 1 on a mismatch (printing what was found).
"""
import json
import shutil
import sys
import tempfile
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_SECONDS = 15


def fail(message):
    print(f"ui_fleet: FAIL: {message}", flush=True)
    raise SystemExit(1)


def say(message):
    print(f"ui_fleet: {message}", flush=True)


def banner(driver):
    try:
        box = driver.find_element(By.ID, "error")
        return box.text.strip() if box.is_displayed() else ""
    except WebDriverException:
        return ""


def wait_for(driver, css, what, ready=None):
    def found(d):
        elements = d.find_elements(By.CSS_SELECTOR, css)
        if ready is not None:
            elements = [e for e in elements if ready(e)]
        return elements or False
    try:
        return WebDriverWait(driver, WAIT_SECONDS).until(found)
    except TimeoutException:
        fail(f"no {css!r} ({what}) after {WAIT_SECONDS}s at {driver.current_url}; "
             f"error banner: {banner(driver)!r}")


def click(driver, element):
    """A click as a user makes it, on SVG elements too."""
    driver.execute_script(
        "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", element)


def make_driver(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,900",
                f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def fragment(driver):
    return urllib.parse.unquote(driver.current_url.split("#", 1)[-1])


def walk(driver, base, want):
    child, parent, op = want["child"], want["parent"], want["operation"]
    # 1. services → the child's page with its RED charts
    driver.get(f"{base}/#/services")
    link = wait_for(driver, f'.service-link[data-service="{child}"]', "the child service")[0]
    click(driver, link)
    selector = f'.red-op[data-operation="{op}"] .red-chart[data-chart="errors"] .red-point'
    points = wait_for(driver, selector, "a point of the error chart")
    charts = driver.find_elements(By.CSS_SELECTOR, f'.red-op[data-operation="{op}"] .red-chart')
    kinds = sorted(c.get_attribute("data-chart") for c in charts)
    if kinds != ["duration", "errors", "rate"]:
        fail(f"charts of {op}: {kinds}")
    say(f"service page of {child}: {op} has charts {kinds}")
    # 2. a click on the error chart: that minute's traces, errors first
    click(driver, points[-1])
    rows = wait_for(driver, ".trace-row", "the traces of the clicked minute")
    where = fragment(driver)
    if "sort=errors" not in where or f"name={op}" not in where:
        fail(f"the click opened {where}")
    first = rows[0].get_attribute("data-trace-id")
    if first != want["error_trace"]:
        ids = [r.get_attribute("data-trace-id") for r in rows]
        fail(f"errors first: want {want['error_trace']} first, found {ids}")
    say(f"the error chart's point lists {len(rows)} traces, the error trace first")
    # 3. the trace, the child span, its log
    click(driver, rows[0])
    span = wait_for(driver, f'.span-row[data-span-id="{want["error_span"]}"]', "the child span")[0]
    if not span.find_elements(By.CSS_SELECTOR, ".log-mark"):
        fail("the child span's bar has no log mark")
    click(driver, span)
    messages = [e.text for e in wait_for(driver, ".span-detail .span-log .log-message",
                                         "the child span's logs")]
    if want["message"] not in messages:
        fail(f"the span's logs: {messages}")
    say(f"span {want['error_span']} shows its log and a log mark on its bar")
    # 4. the service map and an edge's traces
    driver.get(f"{base}/#/map")
    edge = wait_for(driver, f'.map-edge[data-parent="{parent}"][data-child="{child}"]',
                    "the parent → child edge")[0]
    if edge.get_attribute("data-calls") != str(want["calls"]):
        fail(f"edge calls: {edge.get_attribute('data-calls')}, want {want['calls']}")
    nodes = sorted(n.get_attribute("data-service")
                   for n in driver.find_elements(By.CSS_SELECTOR, ".map-node"))
    say(f"the map has nodes {nodes} and {parent} → {child} with {want['calls']} calls")
    click(driver, edge)
    wait_for(driver, "#edge-note", "the edge's trace list")
    rows = wait_for(driver, ".trace-row", "the edge's traces")
    for row in rows:
        services = [c.text for c in row.find_elements(By.CSS_SELECTOR, "td .chip")]
        if parent not in services or child not in services:
            fail(f"a trace of the edge without both services: {services}")
    say(f"the edge lists {len(rows)} traces, each with both services")
    # 5. the log view: volume, the record's moment, narrowing by a bar
    word = want["word"]
    driver.get(f"{base}/#/logs?q={urllib.parse.quote(word)}")
    bars = wait_for(driver, "#log-volume .volume-bar", "the volume histogram")
    total = sum(int(b.get_attribute("data-count")) for b in bars)
    if total != want["records"]:
        fail(f"the histogram counts {total} records, want {want['records']}")
    links = wait_for(driver, ".log-row .trace-link", "log rows with trace links")
    target = [link for link in links
              if want["error_trace"] in link.get_attribute("href")]
    if not target:
        fail(f"no log row links to {want['error_trace']}")
    click(driver, target[0])
    wait_for(driver, f'.span-row.highlight[data-span-id="{want["error_span"]}"]',
             "the record's span, highlighted")
    marked = wait_for(driver, ".span-log.marked .log-message", "the marked record")
    if want["message"] not in [m.text for m in marked]:
        fail(f"marked: {[m.text for m in marked]}")
    say("the log's trace link opens its span highlighted with the record marked")
    driver.get(f"{base}/#/logs?q={urllib.parse.quote(word)}")
    bars = wait_for(driver, "#log-volume .volume-bar", "the histogram again",
                    ready=lambda b: int(b.get_attribute("data-count")) > 0)
    count = int(bars[0].get_attribute("data-count"))
    click(driver, bars[0])
    wait_for(driver, ".log-row", "the narrowed search",
             ready=lambda r: "start=" in fragment(driver) and "end=" in fragment(driver))
    rows = driver.find_elements(By.CSS_SELECTOR, ".log-row")
    if len(rows) != count:
        fail(f"the bar of {count} records narrowed to {len(rows)} rows")
    say(f"a histogram bar narrows the search to its {count} records")


def partial(driver, base, node):
    driver.get(f"{base}/#/traces?limit=5")
    box = wait_for(driver, "#partial.shown", "the partial banner")[0]
    if node not in box.text:
        fail(f"the banner does not name {node}: {box.text!r}")
    say(f"the partial banner says: {box.text}")


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    base = sys.argv[1].rstrip("/")
    profile = tempfile.mkdtemp(prefix="ssfd-ui-fleet-")
    driver = None
    try:
        driver = make_driver(profile)
        if sys.argv[2] == "partial":
            partial(driver, base, sys.argv[3])
        else:
            walk(driver, base, json.loads(sys.argv[2]))
    except WebDriverException as error:
        fail(f"browser error: {error.msg or error}")
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    say("OK")


if __name__ == "__main__":
    main()
