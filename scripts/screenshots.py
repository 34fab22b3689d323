"""Screenshots of the running demo console, taken with headless Chromium.

make run   # in another terminal (demo data, http://127.0.0.1:8000)
.venv/bin/python scripts/screenshots.py [--base-url http://127.0.0.1:8000] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def log_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    base, out = args.base_url.rstrip("/"), args.out
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        # Bob, in Finance: the large payment Ada approved waits for his approval.
        log_in(page, base, "bob", "demo-approver-pass")
        page.screenshot(path=out / "inbox.png", full_page=True)
        page.get_by_role("link", name="Review").first.click()
        page.wait_for_load_state()
        page.screenshot(path=out / "review.png", full_page=True)
        page.get_by_role("button", name="Log out").click()

        log_in(page, base, "admin", "demo-admin-pass")
        page.goto(f"{base}/admin/")
        page.screenshot(path=out / "dashboard.png", full_page=True)
        page.goto(f"{base}/admin/runs/run/?status=failed")
        page.screenshot(path=out / "runs-list.png", full_page=True)
        page.goto(f"{base}/admin/runs/run/")
        page.locator("#result_list tbody tr a").first.click()
        page.wait_for_url(re.compile(r"/admin/runs/run/.+/change/"))
        page.screenshot(path=out / "run-detail.png", full_page=True)
        browser.close()
    for path in sorted(out.glob("*.png")):
        print(path)


if __name__ == "__main__":
    main()
