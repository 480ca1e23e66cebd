"""The README's picture of `mnistzoo serve`: headless Chromium draws a 7 on the page and takes a screenshot.

    python scripts/serve_screenshot.py [--out docs/serve.png]

Needs Debian's chromium and chromium-driver, and the serve extra.
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "serve.png")
    args = parser.parse_args()
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mnistzoo", "serve", "--port", str(port)])
    try:
        with chromium(1200, 900) as driver:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    driver.get(f"http://127.0.0.1:{port}/")
                    break
                except Exception:  # noqa: BLE001 - the server is still loading its models
                    time.sleep(0.5)
            WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".model"))
            pad = driver.find_element(By.ID, "pad")
            chain = ActionChains(driver).move_to_element_with_offset(pad, -70, -80).click_and_hold()
            for dx, dy in [(15, 0)] * 9 + [(-6, 15)] * 11:  # a 7: the bar, then the stem
                chain = chain.move_by_offset(dx, dy)
            chain.release().perform()
            WebDriverWait(driver, 30).until(lambda d: all(p.text for p in d.find_elements(By.CSS_SELECTOR, ".pred")))
            shot = Image.open(io.BytesIO(driver.get_screenshot_as_png()))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shot.save(args.out, optimize=True)
            print(f"{args.out}: {[p.text for p in driver.find_elements(By.CSS_SELECTOR, '.pred')]}")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
