"""Drives ssfd's web UI (`GET /`) in Debian's headless Chromium with Selenium 4.

Usage: ui_check.py BASE_URL TRACE_ID EXPECTED_JSON SCREENSHOT_PATH

EXPECTED_JSON: {"spans": [[service, name], ...], "expand": "<span id>", "logs": [message, ...],
                "resource": {key: value, ...} (optional), "trace_logs": [message, ...] (optional)}

Loads BASE_URL/#/trace/TRACE_ID, checks that the waterfall's rows (data-service,
data-name), in document order, are exactly `spans`; clicks the row of span `expand`
and checks that the set of log messages in its detail panel is exactly `logs` (and, when
given, that its resource table holds `resource`, and that the trace's records without a
stored span are exactly `trace_logs`); saves a screenshot; then loads BASE_URL/#/logs?q=<first word of the first log message> and
checks that a log row with a trace link appears. Exits 0 on success, 1 on a mismatch
(printing what was found). Chromium and chromedriver are the Debian packages', named
explicitly so that Selenium Manager never downloads anything.
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
WAIT_SECONDS = 10


def fail(message):
    print(f"ui_check: FAIL: {message}", flush=True)
    raise SystemExit(1)


def page_error(driver):
    """The UI's error banner text, if shown (helps explain a timeout)."""
    try:
        banner = driver.find_element(By.ID, "error")
        return banner.text.strip() if banner.is_displayed() else ""
    except WebDriverException:
        return ""


def wait_for(driver, css, what):
    try:
        return WebDriverWait(driver, WAIT_SECONDS).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, css) or False)
    except TimeoutException:
        fail(f"no {css!r} ({what}) after {WAIT_SECONDS}s at {driver.current_url}; "
             f"error banner: {page_error(driver)!r}")


def make_driver(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,900",
                f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def check(driver, base, trace_id, expected, screenshot):
    driver.get(f"{base}/#/trace/{urllib.parse.quote(trace_id, safe='')}")
    wait_for(driver, ".span-row", "waterfall rows")
    rows = driver.find_elements(By.CSS_SELECTOR, ".span-row")
    found = [[r.get_attribute("data-service"), r.get_attribute("data-name")] for r in rows]
    want = [list(pair) for pair in expected["spans"]]
    if found != want:
        fail(f"waterfall rows differ\n  want: {want}\n  found: {found}")
    print(f"ui_check: waterfall has the {len(found)} expected rows in order", flush=True)

    target = [r for r in rows if r.get_attribute("data-span-id") == str(expected["expand"])]
    if not target:
        ids = [r.get_attribute("data-span-id") for r in rows]
        fail(f"no .span-row with data-span-id={expected['expand']!r}; ids: {ids}")
    target[0].click()
    if expected["logs"]:
        wait_for(driver, ".span-detail .span-log", "logs of the expanded span")
    else:
        wait_for(driver, ".span-detail", "detail panel of the expanded span")
    lines = driver.find_elements(By.CSS_SELECTOR, ".span-detail .span-log")
    messages = []
    for line in lines:
        parts = line.find_elements(By.CSS_SELECTOR, ".log-message")
        messages.append(parts[0].text if parts else line.text)
    if set(messages) != set(expected["logs"]):
        fail(f"logs of span {expected['expand']} differ\n  want: {sorted(expected['logs'])}\n"
             f"  found: {sorted(messages)}")
    if "resource" in expected:
        cells = [[td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")]
                 for tr in driver.find_elements(By.CSS_SELECTOR, ".span-detail .span-resource tr")]
        found_resource = {row[0]: row[1] for row in cells if len(row) == 2}
        for key, value in expected["resource"].items():
            if found_resource.get(key) != value:
                fail(f"resource of span {expected['expand']}: want {key}={value!r}, "
                     f"found {found_resource}")
        print(f"ui_check: the span detail shows its resource {found_resource}", flush=True)
    if "trace_logs" in expected:
        lines = driver.find_elements(By.CSS_SELECTOR, "#trace-logs .span-log .log-message")
        found_logs = sorted(line.text for line in lines)
        if found_logs != sorted(expected["trace_logs"]):
            fail(f"trace-level logs differ\n  want: {sorted(expected['trace_logs'])}\n"
                 f"  found: {found_logs}")
        print(f"ui_check: the trace shows {len(found_logs)} records without a stored span",
              flush=True)
    metrics = len(driver.find_elements(By.CSS_SELECTOR, ".span-detail .span-metric"))
    print(f"ui_check: span {expected['expand']} shows its {len(messages)} logs "
          f"({metrics} metric rows)", flush=True)
    if not driver.save_screenshot(screenshot):
        fail(f"could not save the screenshot to {screenshot}")
    print(f"ui_check: screenshot saved to {screenshot}", flush=True)

    if not expected["logs"]:
        return
    word = expected["logs"][0].split()[0]
    driver.get(f"{base}/#/logs?q={urllib.parse.quote(word, safe='')}")
    wait_for(driver, ".log-row .trace-link", f"a log row linking to a trace for q={word!r}")
    links = driver.find_elements(By.CSS_SELECTOR, ".log-row .trace-link")
    print(f"ui_check: log search q={word!r} shows {len(links)} rows with trace links "
          f"(first links to {links[0].get_attribute('href')})", flush=True)


def main():
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    base, trace_id, expected_json, screenshot = sys.argv[1:]
    base = base.rstrip("/")
    try:
        expected = json.loads(expected_json)
    except json.JSONDecodeError as error:
        fail(f"EXPECTED_JSON is not JSON: {error}")
    profile = tempfile.mkdtemp(prefix="ssfd-ui-chromium-")
    driver = None
    try:
        driver = make_driver(profile)
        check(driver, base, trace_id, expected, screenshot)
    except WebDriverException as error:
        fail(f"browser error: {error.msg or error}")
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print("ui_check: OK", flush=True)


if __name__ == "__main__":
    main()
