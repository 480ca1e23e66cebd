"""`mnistzoo serve`: a real server on a free port, its JSON API and every error class, and the page in Chromium."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from browser import chromium, needs_browser
from cli_helpers import assert_one_line_error, run_cli

pytest.importorskip("fastapi")
DIGIT_MODELS = ["mlp3_dropout_bn@1", "cnn3_k5@1", "softmax_sgd@1"]
SERVED = [*DIGIT_MODELS, "fashion_mlp2@1"]  # two datasets: the page groups them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    """The app with the starter pack's digit models, served by uvicorn in a thread on a free port."""
    import uvicorn

    from mnistzoo.serve import create_app

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(SERVED), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield "127.0.0.1", port
    srv.should_exit = True
    thread.join(10)


def call(server: tuple[str, int], method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict | list | str]:
    conn = http.client.HTTPConnection(*server, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read().decode()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(raw) if kind.startswith("application/json") else raw
    finally:
        conn.close()


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits(mnist_home) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    from homes import using_home
    from mnistzoo import data

    with using_home(mnist_home):
        ds = data.load("mnist")
    return ds.x_test[:40], ds.y_test[:40]


def test_models_and_cards(server: tuple[str, int]) -> None:
    status, models = call(server, "GET", "/api/models")
    assert status == 200 and [m["name"] for m in models] == SERVED
    status, card = call(server, "GET", "/api/models/cnn3_k5@1/card")
    assert status == 200 and card["name"] == "cnn3_k5@1" and card["dataset"] == "mnist"
    status, page = call(server, "GET", "/")
    assert status == 200 and "<canvas id=\"pad\"" in page and "http" not in page.split("<script>")[1].split("fetch")[0]


def test_real_test_digits_sent_as_png_get_the_models_answers(server: tuple[str, int], digits) -> None:  # noqa: ANN001
    from mnistzoo import load_pretrained

    x, y = digits
    expected = {m: load_pretrained(m).predict(x) for m in DIGIT_MODELS}
    for i in range(len(x)):
        status, out = call(server, "POST", f"/api/predict?models={','.join(DIGIT_MODELS)}", png(x[i]),
                           {"Content-Type": "image/png"})
        assert status == 200, out
        assert np.array_equal(np.array(out["input"]), x[i])  # a 28x28 digit in the dataset's form is unchanged
        for r in out["results"]:
            assert r["prediction"] == expected[r["model"]][i] and abs(sum(r["probabilities"]) - 1) < 1e-4
    assert (expected["cnn3_k5@1"] == y).mean() >= 0.95
    status, out = call(server, "POST", "/api/predict?models=cnn3_k5@1", json.dumps({"image": x[0].tolist()}).encode(),
                       {"Content-Type": "application/json"})
    assert status == 200 and [r["model"] for r in out["results"]] == ["cnn3_k5@1"]
    assert out["results"][0]["prediction"] == y[0]


def _bomb() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, format="PNG")  # 25 M pixels in a few KB
    return buffer.getvalue()


@pytest.mark.parametrize(("path", "body", "kind", "status", "fragment"), [
    ("/api/predict", b"not an image", "image/png", 400, "not a PNG or JPEG"),
    ("/api/predict", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "image/png", 400, "not a PNG or JPEG"),
    ("/api/predict", "bomb", "image/png", 400, "pixels accepted"),
    ("/api/predict", b'{"image": [[1, 2], [3, 4]]}', "application/json", 400, "expected shape (28, 28)"),
    ("/api/predict", json.dumps({"image": [[float("nan")] * 28] * 28}).encode(), "application/json", 400, "NaN"),
    ("/api/predict", json.dumps({"image": [[300] * 28] * 28}).encode(), "application/json", 400, "0-255"),
    ("/api/predict", b'{"img": 1}', "application/json", 400, "expected JSON"),
    ("/api/predict", b"[1, 2", "application/json", 400, "expected JSON"),
    ("/api/predict?models=nope", b"x", "image/png", 404, "unknown model 'nope'"),
    ("/api/predict", b"\x00" * (4 * 1024 * 1024 + 1), "image/png", 413, "over 4,194,304 bytes"),
    ("/api/models/..%2F..%2Fetc%2Fpasswd/card", None, None, 404, ""),
])
def test_bad_requests(server: tuple[str, int], path: str, body, kind, status: int, fragment: str) -> None:  # noqa: ANN001
    method = "GET" if body is None else "POST"
    got, out = call(server, method, path, _bomb() if body == "bomb" else body, {"Content-Type": kind} if kind else {})
    assert got == status, out
    assert fragment in (out.get("error") or out.get("detail") or "" if isinstance(out, dict) else out)


def test_a_chunked_body_over_the_limit_is_cut_off(server: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*server, timeout=30)
    try:
        conn.request("POST", "/api/predict", body=iter([b"\x00" * 1024 * 1024] * 6),
                     headers={"Content-Type": "image/png"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and "over" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_concurrent_requests_all_answer(server: tuple[str, int], digits) -> None:  # noqa: ANN001
    x, y = digits
    bodies = [png(x[i % len(x)]) for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: call(server, "POST", "/api/predict?models=mlp3_dropout_bn@1", b,
                                               {"Content-Type": "image/png"}), bodies))
    assert all(status == 200 for status, _ in answers)


def test_cli_errors_and_the_default_host(tmp_path) -> None:  # noqa: ANN001
    assert_one_line_error(run_cli("serve", "nosuch"), 2, "unknown model 'nosuch'")
    assert_one_line_error(run_cli("serve", "--port", "70000"), 2, "--port must be from 1 to 65535")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        assert_one_line_error(run_cli("serve", "--port", str(busy.getsockname()[1])), 2, "cannot listen on")
    help_text = run_cli("serve", "--help").stdout
    assert "127.0.0.1" in help_text and "pip install 'mnistzoo[serve]'" in help_text  # the extra, not markup


@needs_browser
def test_drawing_a_one_on_the_page(server: tuple[str, int]) -> None:
    """A one drawn by hand: every digit model's row shows the API's reading of the page's own picture, grouped by
    dataset, and a click on a column sorts its table."""
    import base64

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as driver:
        driver.get(f"http://{server[0]}:{server[1]}/")
        WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".model")) == len(SERVED))
        tables = driver.find_elements(By.CSS_SELECTOR, "table.models")
        assert [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#models h2")] == ["Digits (MNIST)",
                                                                                        "Fashion-MNIST"]
        assert [len(t.find_elements(By.CSS_SELECTOR, "tbody tr")) for t in tables] == [3, 1]
        pad = driver.find_element(By.ID, "pad")
        chain = ActionChains(driver).move_to_element_with_offset(pad, 0, -90).click_and_hold()
        for step in range(1, 13):  # a vertical bar, top to bottom, in small moves like a hand
            chain = chain.move_by_offset(0, 15)
        chain.release().perform()
        WebDriverWait(driver, 20).until(
            lambda d: all(p.text for p in d.find_elements(By.CSS_SELECTOR, ".model .pred")))
        readings = {m.get_attribute("id"): m.find_element(By.CSS_SELECTOR, ".pred").text
                    for m in driver.find_elements(By.CSS_SELECTOR, ".model")}
        drawn = base64.b64decode(driver.execute_script("return document.getElementById('pad')"
                                                       ".toDataURL('image/png')").split(",", 1)[1])
        status, out = call(server, "POST", "/api/predict", drawn, {"Content-Type": "image/png"})
        assert status == 200 and len(out["results"]) == len(SERVED)
        names = {m: call(server, "GET", f"/api/models/{m}/card")[1]["class_names"]
                 for m in SERVED}
        assert readings == {f"m-{r['model']}": names[r["model"]][r["prediction"]] for r in out["results"]}
        assert all(readings[f"m-{name}"] == "1" for name in DIGIT_MODELS), readings
        seen = driver.execute_script("return Array.from(document.getElementById('seen').getContext('2d')"
                                     ".getImageData(0, 0, 28, 28).data).filter((v, i) => i % 4 == 0)")
        assert max(seen) > 200 and sorted(seen)[len(seen) // 2] < 30  # a bright stroke on black, as in MNIST
        header = tables[0].find_elements(By.CSS_SELECTOR, "th")[4]  # p, the reading's probability
        header.click()
        values = [float(td.text) for td in tables[0].find_elements(By.CSS_SELECTOR, "td.p")]
        assert values == sorted(values) and header.get_attribute("aria-sort") == "ascending"
        header.click()
        assert [float(td.text) for td in tables[0].find_elements(By.CSS_SELECTOR, "td.p")] == sorted(values)[::-1]
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
