"""Rebuild ``docs/`` from ``results/`` and take the README's screenshot of the page in headless Chromium.

    python scripts/build_docs.py

Needs Debian's chromium and chromium-driver for the screenshot (``docs/screenshot.png``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mnistzoo.report import build_report

ROOT = Path(__file__).resolve().parent.parent


def screenshot(page: Path, target: Path, width: int = 1280, height: int = 900) -> None:
    """The top of the page as Chromium draws it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}",
                "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
    try:
        driver.get(page.as_uri())
        driver.save_screenshot(str(target))
    finally:
        driver.quit()


def main() -> None:
    docs = ROOT / "docs"
    shutil.rmtree(docs / "img", ignore_errors=True)  # drop figures of models no longer reported
    page = build_report(ROOT / "results", docs)
    screenshot(page, docs / "screenshot.png")
    print(f"{page} and {docs / 'screenshot.png'}")


if __name__ == "__main__":
    main()
