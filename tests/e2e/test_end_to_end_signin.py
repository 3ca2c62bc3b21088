"""End to end, as a team signs in: a real OpenID provider on loopback (tests/client/oidc_provider.py),
four real nodes, the client, and headless Chromium. A developer signs in through the provider's
login page, sees only the repository the grants give their group, asks for a build, is refused
its cancel (403 naming the role), signs out; an admin signs in and approves a fork's pull
request; the audit lists who did what, in order, and the certificate and the attestation name its actor.
A return URL from a sign-in someone else began, opened in the browser, signs nobody in."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from pathlib import Path

import aiohttp
import yaml

from harness.builds import slow_repository
from harness.real_project import git
from harness.scripts import client
from harness.verdicts import http_json
from shared.config import load_config
from tests.client.oidc_provider import CLIENT_ID, CLIENT_SECRET, login_form, provider, return_url
from tests.e2e.browser import BROWSER_MARKS, text_of, texts, wait_for
from tests.e2e.example_network import OWN_NETWORK, settled
from tests.e2e.github_deliveries import forge_config, pull_request
from selenium.webdriver.common.by import By  # noqa: E402 (tests.e2e.browser skips the module without selenium)

pytestmark = [*BROWSER_MARKS, OWN_NETWORK]
BUILD_WAIT_S = 120
TOKEN = "e2e-machine-token-" + "0" * 30
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ACCOUNTS = {"alice": ["developers"], "root": []}
SLOW_SPEC = "commands:\n  - echo started\n  - sleep 15\n  - echo finished\n"


def signin_config(tmp_path: Path) -> tuple[Path, str]:
    """The forge example with a slow repository whose pull request 6 waits under refs/pull (its
    head is the second value), a second repository, the machine token, sign-in (its issuer
    still to be set) and the grants."""
    slow_repository(tmp_path / "slow", SLOW_SPEC)
    forge = tmp_path / "forge.git"
    subprocess.run(["git", "clone", "-q", "--mirror", str(tmp_path / "slow"), str(forge)], check=True)
    head = git(forge, "commit-tree", "master^{tree}", "-p", "master", "-m", "pull request 6")
    git(forge, "update-ref", "refs/pull/6/head", head)
    path = forge_config(tmp_path)
    (tmp_path / "client.token").write_text(TOKEN + "\n")
    (tmp_path / "oidc.secret").write_text(CLIENT_SECRET + "\n")
    data = yaml.safe_load(path.read_text())
    data["repositories"][0]["url"] = str(forge)
    data["repositories"].append({"name": "other", "url": str(tmp_path / "slow")})
    data["clients"][0].pop("plain_without_token", None)
    data["clients"][0].update(
        token_file=str(tmp_path / "client.token"),
        sign_in={"issuer": "http://127.0.0.1:1", "client_id": CLIENT_ID, "client_secret_file": str(tmp_path / "oidc.secret"),
                 "scopes": ["openid", "profile", "groups"]},
        grants=[{"role": "trigger", "groups": ["developers"], "repositories": ["example"]},
                {"role": "admin", "users": ["root"]}])
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, head


def click(browser, css: str) -> None:
    """Click what `css` selects as the page has it now: the lists re-render as they poll, and an
    element found a moment before may be gone."""
    assert browser.execute_script(
        "const found = document.querySelector(arguments[0]); if (found) found.click(); return Boolean(found);", css)


def shown(browser, element_id: str) -> bool:
    """Whether the page has that element, not hidden, as it stands now (it may be reloading)."""
    return browser.execute_script(
        "const found = document.getElementById(arguments[0]); return Boolean(found && !found.hidden);", element_id)


def sign_in_as(browser, base_url: str, login: str) -> None:
    browser.get(f"{base_url}/dashboard")
    wait_for(browser, "the sign-in link", lambda d: shown(d, "sign-in"))
    click(browser, "#sign-in")
    wait_for(browser, "the provider's login form", lambda d: d.find_elements(By.NAME, "login"))
    browser.find_element(By.NAME, "login").send_keys(login)
    browser.find_element(By.NAME, "password").send_keys("any password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, f"the dashboard, signed in as {login}",
             lambda d: text_of(d, "#signed-in") == f"Signed in as {login}")


def test_people_sign_in_act_with_their_roles_and_the_audit_names_them(network, browser, tmp_path):
    config_path, pull_head = signin_config(tmp_path)
    address = load_config(config_path).clients[0]
    base_url = f"http://{address.host}:{address.port}"
    # The provider knows the client's redirect URI, and the client the provider's issuer.
    with provider(f"{base_url}/auth/callback", ACCOUNTS) as issuer:
        data = yaml.safe_load(config_path.read_text())
        data["clients"][0]["sign_in"]["issuer"] = issuer
        config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        network(str(config_path))
        config = load_config(config_path)
        with client(config, tmp_path / "client.out", str(config_path)) as started_url:
            assert started_url == base_url
            check_the_team(browser, base_url, pull_head)
            check_a_return_url_handed_to_another_browser_signs_nobody_in(browser, base_url)


def check_the_team(browser, base_url: str, pull_head: str) -> None:
    # Before anyone signs in: a build of the other repository, with the machine token.
    code, other = http_json("POST", f"{base_url}/webHook", {"repository": "other", "branch": "master"},
                            headers=BEARER, timeout_s=BUILD_WAIT_S)
    assert code == 200 and other["status"] == "success", other
    code, held = pull_request(base_url, 6, pull_head, source="someone/example-fork")
    assert code == 202 and held["awaiting_approval"] is True, held

    # A developer: sees the example repository only, asks for a build, may not cancel it.
    sign_in_as(browser, base_url, "alice")
    browser.find_element(By.ID, "run-repository").send_keys("example")
    browser.find_element(By.ID, "run-branch").send_keys("master")
    browser.find_element(By.CSS_SELECTOR, "#run button[type=submit]").click()
    row = wait_for(browser, "alice's build in the list", lambda d: [
        name for name in texts(d, "#builds tbody a.build-link") if name.startswith("example")])
    assert all(not name.startswith("other") for name in texts(browser, "#builds tbody a.build-link"))
    # She sees the fork's pull request waiting on her repository, and may not approve it.
    approve = f'#approvals button[data-approval-id="{held["approval_id"]}"]'
    wait_for(browser, "the pull request waiting", lambda d: d.find_elements(By.CSS_SELECTOR, approve))
    click(browser, approve)
    assert wait_for(browser, "the approval's refusal", lambda d: "approve" in (text_of(d, "#notice") or "")
                    and text_of(d, "#notice")) == (
        "Could not approve: this needs the role approve: user alice has the role trigger")
    click(browser, "#builds tbody a.build-link")
    wait_for(browser, "the cancel button", lambda d: shown(d, "cancel"))
    assert text_of(browser, '#summary dd[data-field="asked_for_by"]') == "user alice"
    click(browser, "#cancel")
    assert wait_for(browser, "the refusal", lambda d: "needs the role" in (text_of(d, "#notice") or "")
                    and text_of(d, "#notice")) == (
        "Could not cancel the build: this needs the role operate: user alice has the role trigger"), row
    alice_build = browser.current_url.rstrip("/").rsplit("/", 1)[1]

    # Signing out ends the session: the page offers sign-in again and the records need it.
    click(browser, "#sign-out")
    wait_for(browser, "the sign-in link again", lambda d: shown(d, "sign-in"))
    assert browser.execute_script("return fetch('/session').then((r) => r.status)") == 401
    assert browser.execute_script("return fetch('/builds').then((r) => r.status)") == 401

    # An admin, at the same browser: the provider still knows alice (signing out of pbft-ci is
    # not signing out of the provider), so its cookies go as a new person's browser would have none.
    browser.delete_all_cookies()
    sign_in_as(browser, base_url, "root")
    wait_for(browser, "the pull request waiting", lambda d: d.find_elements(By.CSS_SELECTOR, approve))
    click(browser, approve)
    wait_for(browser, "the approved build's page", lambda d: "/dashboard/builds/" in d.current_url)
    approved = browser.current_url.rstrip("/").rsplit("/", 1)[1]
    record = settled(f"{base_url}/builds/{approved}", BUILD_WAIT_S, BEARER)
    assert record["actor"] == {"kind": "user", "name": "root"} and record["pull_request"] == 6, record

    code, audit = http_json("GET", f"{base_url}/audit", headers=BEARER)
    assert code == 200, audit
    assert [(entry["action"], entry["actor"]["name"], entry["repository"]) for entry in reversed(audit["actions"])] == [
        ("build", "client", "other"), ("build", "alice", "example"), ("approve", "root", "example")], audit
    assert audit["actions"][1]["build_id"] == alice_build
    code, certificate = http_json("GET", f"{base_url}/builds/{approved}/certificate", headers=BEARER)
    assert code == 200 and certificate["request"]["operation"]["actor"] == {"kind": "user", "name": "root"}
    code, envelope = http_json("GET", f"{base_url}/builds/{approved}/attestation", headers=BEARER)
    assert code == 200, envelope
    [repository, *_] = json.loads(base64.b64decode(envelope["payload"]))["predicate"]["configuration"]
    assert repository["annotations"]["requestedBy"] == "user root", repository



def check_a_return_url_handed_to_another_browser_signs_nobody_in(browser, base_url: str) -> None:
    """Someone signs in at the provider as themselves, stops before the way back to the client
    and hands its URL to a browser that never began that sign-in (login CSRF): no session."""

    async def handed() -> str:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as attacker:
            form = await login_form(attacker, base_url)
            return await return_url(attacker, form, "root", f"{base_url}/auth/callback")

    returning = asyncio.run(handed())
    browser.delete_all_cookies()  # the client's: as a browser that was never signed in here
    browser.get(returning)
    assert "this browser did not begin this sign-in" in browser.find_element(By.TAG_NAME, "body").text
    assert browser.execute_script("return fetch('/session').then((r) => r.status)") == 401
    assert not [cookie for cookie in browser.get_cookies() if cookie["name"] == "pbft_session"]
