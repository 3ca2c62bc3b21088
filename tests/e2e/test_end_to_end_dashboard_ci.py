"""End to end in a real browser: the dashboard reads like a CI.

Four real nodes, one of them lying about every result (`--byzantine 3:lie`),
the client, and headless Chromium (tests/e2e/browser.py). The repository's
`master` prints ANSI colours around markup, a long line, and makes an
artifact; its `broken` branch fails. The page must show each build as
"printing #N", colour the verdict (a failed build is never green), mark both
builds with the liar's dissent, lay the four nodes' output out in a 2×2
grid whose lines scroll rather than wrap, turn the colours into spans
without letting the markup in, hand out artifact links whose bytes are the
agreed ones, and keep the verdict in view on a 390 px wide phone.
Screenshots of each page go to log/dashboard/.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from harness.builds import slow_repository
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import NetworkConfig, load_config
from tests.e2e.browser import BROWSER_MARKS, attributes, screenshot, text_of, texts, wait_for
from tests.e2e.example_network import OWN_NETWORK, example_copy, webhook

pytestmark = [*BROWSER_MARKS, OWN_NETWORK]

LIAR = 3
BUILD_WAIT_S = 120
ARTIFACT = "dist/hello.txt"
ARTIFACT_BYTES = b"the agreed bytes\n"
# Words joined by dashes, far wider than a pane: the line must scroll, never break inside a word.
LONG_LINE_COMMAND = "printf 'no-wrap-%s-' $(seq 1 80); echo"
PAUSE_S = 2
PRINTING_SPEC = {
    "commands": [
        r"printf '\033[31mred\033[0m <b id=x>\n'",
        LONG_LINE_COMMAND,
        # Two lines written PAUSE_S apart: the node's line times tell them apart, the page's arrival could not.
        "echo before the pause",
        f"sleep {PAUSE_S}",
        "echo after the pause",
        f"mkdir -p dist && printf '{ARTIFACT_BYTES.decode().rstrip()}\\n' > {ARTIFACT}",
    ],
    "artifacts": [ARTIFACT],
}
BROKEN_SPEC = {"commands": ["echo about to fail", "false"]}
WIDE = (1400, 1000)
PHONE = (390, 844)


def printing_repository(path: Path) -> None:
    """`master` builds and makes an artifact; `broken` fails."""
    slow_repository(path, yaml.safe_dump(PRINTING_SPEC))
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "checkout", "-q", "-b", "broken"], check=True)
    (path / ".pbft-ci.yml").write_text(yaml.safe_dump(BROKEN_SPEC))
    subprocess.run([*git, "commit", "-q", "-am", "a failing build"], check=True)
    subprocess.run([*git, "checkout", "-q", "master"], check=True)


def liar_network(tmp_path: Path) -> Path:
    printing_repository(tmp_path / "printing")
    repositories = [{"name": "printing", "url": str(tmp_path / "printing")}]
    path = example_copy(tmp_path, allow_byzantine=True, repositories=repositories)
    return path


def test_the_dashboard_reads_like_a_ci(network, browser, tmp_path):
    config_path = liar_network(tmp_path)
    config = load_config(config_path)
    network(str(config_path), "--byzantine", f"{LIAR}:lie")
    with client(config, tmp_path / "client.out", str(config_path)) as base_url:
        passed = webhook(base_url, config, "master")
        failed = webhook(base_url, config, "broken")
        assert (passed["status"], failed["status"]) == ("success", "failure"), (passed, failed)
        shots = []
        try:
            shots.append(check_the_list(browser, base_url, passed, failed))
            shots.extend(check_the_build_page(browser, base_url, config, passed))
            shots.append(check_the_list_on_a_phone(browser, base_url, passed, failed))
        except Exception:
            print("failure screenshot:", screenshot(browser, "ci-failure.png"))
            raise
        finally:
            browser.set_window_size(*WIDE)
        for shot in shots:
            print("screenshot:", shot)
        check_the_dissent_marks(browser, base_url, passed, failed)


def row(build: dict) -> str:
    return f'#builds tr[data-build-id="{build["build_id"]}"]'


def colour(driver, css: str) -> tuple[int, ...]:
    """The computed text colour of the element `css` selects, as (red, green, blue)."""
    value = driver.execute_script("return getComputedStyle(document.querySelector(arguments[0])).color;", css)
    return tuple(int(part) for part in value[value.index("(") + 1:value.index(")")].split(",")[:3])


def check_the_list(browser, base_url: str, passed: dict, failed: dict) -> Path:
    browser.set_window_size(*WIDE)
    browser.get(f"{base_url}/dashboard")
    names = wait_for(browser, "both builds named", lambda d: (
        found if len(found := texts(d, "#builds td[data-field=name] a.build-link")) == 2 else None))
    assert names == ["printing #2", "printing #1"]
    assert attributes(browser, f"{row(passed)} a.build-link", "title") == [f"build {passed['build_id']}"]

    # The verdict carries the colour: green for the success, not green for the failure.
    good = colour(browser, f"{row(passed)} td[data-field=verdict]")
    bad = colour(browser, f"{row(failed)} td[data-field=verdict]")
    assert good != bad
    assert good[1] > max(good[0], good[2]), good
    assert not bad[1] > max(bad[0], bad[2]), bad
    assert text_of(browser, f"{row(failed)} td[data-field=verdict] .verdict-word") == "failure (exit 1)"
    shot = screenshot(browser, "ci-builds-1400.png")

    # A filter lives in the page's URL, and the list shows only what it lets through.
    browser.find_element("css selector", "#filter-verdict option[value=failure]").click()
    wait_for(browser, "the failures only", lambda d: attributes(d, "#builds tbody tr", "data-build-id") == [
        failed["build_id"]])
    assert browser.current_url.endswith("/dashboard?verdict=failure")
    browser.get(f"{base_url}/dashboard?branch=master")
    wait_for(browser, "master's builds only", lambda d: attributes(d, "#builds tbody tr", "data-build-id") == [
        passed["build_id"]])
    assert browser.find_element("id", "filter-branch").get_attribute("value") == "master"
    check_the_pages(browser, base_url, [failed["build_id"], passed["build_id"]])
    return shot


def check_the_pages(browser, base_url: str, newest_first: list[str]) -> None:
    """One build a page: Next to the older one, through the client's cursor, and Newer back."""
    def shown(driver):
        return attributes(driver, "#builds tbody tr", "data-build-id")

    def press(button: str) -> None:
        wait_for(browser, f"the {button} button", lambda d: d.find_element("id", button).is_displayed())
        browser.find_element("id", button).click()

    browser.get(f"{base_url}/dashboard?limit=1")
    wait_for(browser, "the newest build alone", lambda d: shown(d) == newest_first[:1])
    press("page-next")
    wait_for(browser, "the older build on the next page", lambda d: shown(d) == newest_first[1:])
    assert f"before={newest_first[0]}" in browser.current_url
    wait_for(browser, "no page after the last", lambda d: not d.find_element("id", "page-next").is_displayed())
    press("page-newer")
    wait_for(browser, "the first page again", lambda d: shown(d) == newest_first[:1])


def check_the_build_page(browser, base_url: str, config: NetworkConfig, passed: dict) -> list[Path]:
    build_id = passed["build_id"]
    browser.set_window_size(*WIDE)
    browser.get(f"{base_url}/dashboard/builds/{build_id}")
    wait_for(browser, "the build's name", lambda d: text_of(d, "#build-name") == "printing #1")
    for node in config.nodes:
        wait_for(browser, f"node {node.id}'s output to end",
                 lambda d, i=node.id: text_of(d, f"#output-state-{i}") == "finished", BUILD_WAIT_S)
    base = f"/builds/{build_id}/"
    for link, path in [("certificate", "certificate"), ("attestation", "attestation"), ("in-toto", "in-toto"),
                       ("provenance", "provenance")]:
        assert attributes(browser, f"#{link}", "href") == [base + path], link
    assert attributes(browser, "#raw-0", "href") == [f"/builds/{build_id}/log?node=0"]
    check_the_artifacts(browser, base_url, build_id)
    shots = [screenshot(browser, "ci-build.png")]

    check_the_log_grid(browser, honest=0)
    shots.append(screenshot(browser, "ci-logs.png"))
    check_the_colours(browser, honest=0)
    check_line_times_and_one_node_wide(browser)
    return shots


def check_the_artifacts(browser, base_url: str, build_id: str) -> None:
    """The page's link gives the agreed bytes: fetched by the page, with the page's headers, and read
    through the client; both hash to the agreed manifest's digest."""
    code, manifest = http_json("GET", f"{base_url}/builds/{build_id}/artifacts")
    assert code == 200 and manifest["artifacts"] == {
        ARTIFACT: "sha256:" + hashlib.sha256(ARTIFACT_BYTES).hexdigest()}, manifest
    link = f'#artifacts tr[data-path="{ARTIFACT}"] a.artifact-link'
    href = wait_for(browser, "the artifact's link", lambda d: (found := attributes(d, link, "href")) and found[0])
    assert href == f"/builds/{build_id}/artifacts/{ARTIFACT}"
    fetched = browser.execute_async_script("""
        const [href, done] = arguments;
        const token = sessionStorage.getItem("pbft-ci.token");
        fetch(href, { headers: token ? { Authorization: "Bearer " + token } : {} })
          .then((response) => response.arrayBuffer())
          .then((bytes) => crypto.subtle.digest("SHA-256", bytes))
          .then((digest) => done("sha256:" + Array.from(new Uint8Array(digest),
            (byte) => byte.toString(16).padStart(2, "0")).join("")), (error) => done(String(error)));
    """, href)
    assert fetched == manifest["artifacts"][ARTIFACT]
    with urllib.request.urlopen(base_url + href, timeout=60) as answer:
        assert answer.read() == ARTIFACT_BYTES
    digest_cell = f'#artifacts tr[data-path="{ARTIFACT}"] code.digest'
    assert attributes(browser, digest_cell, "title") == [manifest["artifacts"][ARTIFACT]]
    wait_for(browser, "the artifact's size", lambda d: attributes(
        d, f'#artifacts tr[data-path="{ARTIFACT}"] td.size', "data-bytes") == [str(len(ARTIFACT_BYTES))])


def pane_boxes(browser) -> list[dict]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#outputs .pane'), (pane) => {"
        " const box = pane.getBoundingClientRect(); return {x: box.x, y: box.y, width: box.width, hidden: pane.hidden}; });")


def check_the_log_grid(browser, honest: int) -> None:
    """Four panes, two by two; a long line scrolls its pane sideways instead of wrapping."""
    browser.execute_script("document.getElementById('logs').scrollIntoView();")
    boxes = pane_boxes(browser)
    assert len(boxes) == 4, boxes
    assert len({round(box["x"]) for box in boxes}) == 2 and len({round(box["y"]) for box in boxes}) == 2, boxes
    style, scroll_width, client_width = browser.execute_script(
        "const log = document.getElementById(arguments[0]);"
        "return [getComputedStyle(log).whiteSpace, log.scrollWidth, log.clientWidth];", f"output-{honest}")
    assert style == "pre"
    assert scroll_width > client_width, (scroll_width, client_width)
    assert "no-wrap-80-" in text_of(browser, f"#output-{honest}")
    # The settings the node ran the build with are there, folded.
    assert browser.execute_script(
        "const folded = document.querySelector(arguments[0]); return folded !== null && !folded.open;",
        f"#output-{honest} details.settings")


def check_the_colours(browser, honest: int) -> None:
    """The build's red is a span with the red class; its markup stayed text."""
    assert texts(browser, f"#output-{honest} span.ansi-red") == ["red"]
    assert "red <b id=x>\n" in text_of(browser, f"#output-{honest}")
    assert browser.execute_script("return document.getElementById('x');") is None
    assert "\x1b" not in text_of(browser, f"#output-{honest}")


def check_line_times_and_one_node_wide(browser) -> None:
    """The build ended before the page opened, so every line reached the page at once: times
    PAUSE_S apart are the node's own, read once the box is ticked."""
    browser.find_element("id", "show-times").click()
    shown = browser.execute_script(
        "return getComputedStyle(document.querySelector('#output-0 .line'), '::before').content;")
    assert shown.strip('"').count(":") == 2, shown  # a time, hh:mm:ss

    def seconds_apart(driver) -> int | None:
        times = driver.execute_script(
            "const lines = Array.from(document.querySelectorAll('#output-0 .line'));"
            "const at = (text) => lines.find((line) => line.textContent.startsWith(text)).dataset.time;"
            "return [at('before the pause'), at('after the pause')];")
        before, after = (sum(int(part) * 60**(2 - i) for i, part in enumerate(time.split(":"))) for time in times)
        return (after - before) % 86400 or None

    apart = wait_for(browser, "the node's line times", seconds_apart)
    assert PAUSE_S <= apart <= PAUSE_S + 2, apart
    half = pane_boxes(browser)[2]["width"]
    browser.find_element("id", "tab-2").click()
    boxes = pane_boxes(browser)
    assert [box["hidden"] for box in boxes] == [True, True, False, True]
    assert boxes[2]["width"] > 1.8 * half, (half, boxes[2])
    browser.find_element("id", "tab-all").click()


def check_the_list_on_a_phone(browser, base_url: str, passed: dict, failed: dict) -> Path:
    browser.set_window_size(*PHONE)
    browser.get(f"{base_url}/dashboard")
    wait_for(browser, "both builds", lambda d: len(texts(d, "#builds td[data-field=verdict]")) == 2)
    width = browser.execute_script("return window.innerWidth;")
    assert width <= 400, f"the window is {width} px wide, not a phone's"
    for build in (passed, failed):
        left, right = browser.execute_script(
            "const box = document.querySelector(arguments[0]).getBoundingClientRect(); return [box.left, box.right];",
            f"{row(build)} td[data-field=verdict]")
        assert 0 <= left and right <= width, (build["build_id"], left, right, width)
    assert browser.execute_script("return document.documentElement.scrollWidth;") <= width
    return screenshot(browser, "ci-builds-390.png")


def check_the_dissent_marks(browser, base_url: str, passed: dict, failed: dict) -> None:
    """Both builds carry the liar's mark, saying what it said."""
    said = {passed["build_id"]: f"node {LIAR} said failure (exit 1)", failed["build_id"]: f"node {LIAR} said success (exit 0)"}
    for build_id in said:
        liar_reported(base_url, build_id)
    browser.get(f"{base_url}/dashboard")
    for build_id, words in said.items():
        css = f'#builds tr[data-build-id="{build_id}"] [data-field=dissent]'
        title = wait_for(browser, f"the dissent mark on build {build_id}", lambda d, c=css: (
            found := attributes(d, c, "title")) and found[0])
        assert words in title, title
    print("screenshot:", screenshot(browser, "ci-builds-1400.png"))  # again, with the marks


def liar_reported(base_url: str, build_id: str, timeout_s: float = 30) -> None:
    """Wait until the client's record names the liar among the build's dissent: its reply may come late."""
    deadline = time.monotonic() + timeout_s
    while True:
        dissent = http_json("GET", f"{base_url}/builds/{build_id}")[1].get("dissent")
        if any(entry["node"] == LIAR for entry in dissent or []):
            return
        assert time.monotonic() < deadline, f"build {build_id}: the client reports no dissent of node {LIAR}: {dissent}"
        time.sleep(0.5)
