"""fcnet serve: the API's answers and refusals, the page in a real headless Chromium, a bounded load test."""

import http.client
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import fcnet

pytest.importorskip("fastapi", reason="FastAPI is not installed (pip install fcnet[serve])")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from serve_load import free_port, load_test, start_server, workload  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A small digit model, served on a free loopback port for the whole module."""
    from conftest import synthetic_images

    x, y = synthetic_images(600, np.random.default_rng(0))
    model = fcnet.Sequential([fcnet.Dense(64, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, verbose=0)
    model.metadata = {"dataset": "mnist", "class_names": [str(i) for i in range(10)], "test_accuracy": 0.9876,
                      "image_shape": [28, 28]}
    path = tmp_path_factory.mktemp("model") / "digits.npz"
    model.save(path)
    port = free_port()
    server = start_server(path, port)
    yield model, port, path
    server.terminate()
    server.wait(timeout=30)


def call(port, method, path, body=b"", headers=None, chunked=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body, headers or {}, encode_chunked=chunked)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data and response.getheader("content-type", "").startswith(
        "application/json") else data


@pytest.mark.slow
def test_health_and_model_summary(served):
    _, port, _ = served
    assert call(port, "GET", "/healthz") == (200, {"status": "ok"})
    status, info = call(port, "GET", "/api/model")
    assert status == 200 and info["architecture"] == "784-64-10" and info["test_accuracy"] == 0.9876
    assert info["dataset"] == "mnist" and info["class_names"][3] == "3"


def test_json_prediction_equals_the_models_own(served):
    model, port, _ = served
    x = np.random.default_rng(5).random(784).round(4)
    status, result = call(port, "POST", "/api/predict", json.dumps({"pixels": x.tolist()}).encode(),
                          {"Content-Type": "application/json"})
    expected = model.predict(x[None, :].astype(np.float32))[0]
    assert status == 200 and result["label"] == int(expected.argmax())
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-5)
    assert len(result["input"]) == 784


def test_image_upload_is_prepared_like_mnist(served):
    from PIL import Image, ImageDraw

    _, port, _ = served
    img = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(img).line([(60, 30), (140, 170)], fill=0, width=16)  # dark ink on white, off-centre
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    status, result = call(port, "POST", "/api/predict", buffer.getvalue(), {"Content-Type": "image/png"})
    assert status == 200
    seen = np.array(result["input"]).reshape(28, 28)
    assert seen[0].max() == 0 and seen[14, 14] > 0.5  # inverted, centred, with a black margin


def _bomb():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD = [
    ("wrong length", json.dumps({"pixels": [0.5] * 10}), "application/json", 422, "list of 784 numbers"),
    ("NaN", '{"pixels": [NaN' + ", 0" * 783 + "]}", "application/json", 422, "finite numbers"),
    ("out of range", json.dumps({"pixels": [2.0] * 784}), "application/json", 422, "in 0..1"),
    ("strings", json.dumps({"pixels": ["a"] * 784}), "application/json", 422, "must all be numbers"),
    ("not JSON", "{pixels", "application/json", 400, "not valid JSON"),
    ("no pixels", json.dumps({"image": []}), "application/json", 422, "expected"),
    ("over 1 MB", json.dumps({"pixels": [0.1] * 300_000}), "application/json", 413, "body over"),
    ("not an image", b"hello, not a picture", "image/png", 422, "not a readable image"),
    ("decompression bomb", _bomb, "image/png", 413, "more than the"),
    ("wrong content type", b"1,2,3", "text/csv", 415, "content type text/csv"),
]


@pytest.mark.parametrize("name, body, kind, status, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_json_error(served, name, body, kind, status, message):
    _, port, _ = served
    body = body() if callable(body) else body
    body = body.encode() if isinstance(body, str) else body
    got, result = call(port, "POST", "/api/predict", body, {"Content-Type": kind})
    assert got == status and message in result["error"]


def test_a_chunked_body_over_1_mb_is_refused(served):
    _, port, _ = served
    chunks = (b"x" * 65536 for _ in range(20))
    status, result = call(port, "POST", "/api/predict", chunks, {"Content-Type": "application/json"}, chunked=True)
    assert status == 413 and "body over" in result["error"]


@pytest.mark.slow
def test_bounded_load_every_answer_right(served):
    model, port, _ = served
    bodies, expected = workload(model, n=100)
    rps, p50, p99, errors = load_test(port, bodies, expected, clients=4, requests=100)
    assert not errors
    print(f"\n{rps:.0f} predictions/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_drawing_a_digit_in_chromium_shows_probabilities_and_the_input(served):
    from playwright.sync_api import sync_playwright

    _, port, _ = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1100, "height": 700})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.getElementById('model').textContent.includes('784-64-10')")
        page.uncheck("#live")
        box = page.locator("#pad").bounding_box()
        for stroke in ([(0.5, 0.15), (0.5, 0.85)], [(0.35, 0.3), (0.5, 0.15)]):  # a "1"
            (x0, y0), (x1, y1) = stroke
            page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
            page.mouse.down()
            for t in np.linspace(0, 1, 12):
                page.mouse.move(box["x"] + (x0 + t * (x1 - x0)) * box["width"],
                                box["y"] + (y0 + t * (y1 - y0)) * box["height"])
            page.mouse.up()
        page.click("#predict")
        page.wait_for_function("document.getElementById('label').textContent.length > 0")
        probs = page.eval_on_selector_all(".bar .prob", "els => els.map(e => parseFloat(e.textContent))")
        ink = page.evaluate("Array.from(document.getElementById('seen').getContext('2d')"
                            ".getImageData(0, 0, 28, 28).data).filter((v, i) => i % 4 == 0 && v > 0).length")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve.png"))
        error = page.text_content("#error")
        browser.close()
    assert len(probs) == 10 and abs(sum(probs) - 1) < 0.01 and not error
    assert ink > 10  # the 28x28 input the network saw is drawn next to the pad


def test_a_port_in_use_is_a_one_line_error(served, capsys):
    from fcnet.cli import main

    _, port, path = served
    assert main(["serve", str(path), "--port", str(port)]) == 1
    assert capsys.readouterr().err.strip() == (f"fcnet: error: cannot listen on 127.0.0.1:{port} "
                                               "(Address already in use); pick another --port")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_a_fashion_model_page_asks_for_a_picture_and_names_the_class(tmp_path):
    from playwright.sync_api import sync_playwright

    model = fcnet.Sequential([fcnet.Dense(10, "softmax", input_dim=784)], seed=0)
    model.metadata = {"dataset": "fashion-mnist", "class_names": list(fcnet.datasets.class_names("fashion-mnist"))}
    model.save(tmp_path / "fashion.npz")
    port = free_port()
    server = start_server(tmp_path / "fashion.npz", port)
    try:
        assert call(port, "GET", "/api/model")[1]["preparation"] == "fit"
        status, blank = call(port, "POST", "/api/predict", json.dumps({"pixels": [0.0] * 784}).encode(),
                             {"Content-Type": "application/json"})
        assert status == 200 and blank["warning"].startswith("the input is blank")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('model').textContent.includes('784-10')")
            title = page.text_content("#title")
            page.set_input_files("#upload", files=[{"name": "x.png", "mimeType": "image/png",
                                                    "buffer": _png_bytes()}])
            page.wait_for_function("document.getElementById('label').textContent.length > 0")
            label, under = page.text_content("#label"), page.text_content("#label-name")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert title.startswith("Draw or upload a picture")
    names = fcnet.datasets.class_names("fashion-mnist")
    assert label in names and under == f"class {names.index(label)}"


def _png_bytes():
    """A dark shape on white paper, 56 × 56."""
    picture = np.full((56, 56), 255, np.uint8)
    picture[8:49, 12:45] = 30
    return _png_of(picture)


def test_numbers_json_cannot_hold_and_deep_nesting_are_4xx(served):
    _, port, _ = served
    for body in (b'{"pixels": [' + b"9" * 5000 + b"]}", b"[" * 100_000 + b"]" * 100_000,
                 b'{"pixels": [1e400' + b", 0" * 783 + b"]}"):
        status, answer = call(port, "POST", "/api/predict", body, {"Content-Type": "application/json"})
        assert 400 <= status < 500 and "error" in answer


def _png_of(array):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_healthz_answers_while_large_pictures_are_decoded(served):
    import threading
    import time

    _, port, _ = served
    picture = np.zeros((4096, 4096, 3), np.uint8)  # 16 megapixels, under 1 MB as a PNG
    picture[1000:3000, 1800:2300] = 255
    body = _png_of(picture)
    assert len(body) < 1 << 20
    uploads = []

    def upload():
        start = time.perf_counter()
        status, answer = call(port, "POST", "/api/predict", body, {"Content-Type": "image/png"})
        uploads.append((time.perf_counter() - start, status, answer))

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    start = time.perf_counter()
    assert call(port, "GET", "/healthz") == (200, {"status": "ok"})
    health = time.perf_counter() - start
    for t in threads:
        t.join()
    assert [status for _, status, _ in uploads] == [200] * 4 and uploads[0][2]["label"] == uploads[3][2]["label"]
    assert health < min(seconds for seconds, _, _ in uploads) / 2  # not queued behind a decode


@pytest.mark.slow
def test_port_0_prints_the_port_it_got_and_a_restart_binds_at_once(served):
    import signal
    import subprocess

    _, _, path = served

    def start(port):
        proc = subprocess.Popen([sys.executable, "-m", "fcnet", "serve", str(path), "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        assert line.startswith(f"serving {path} on http://127.0.0.1:"), proc.stderr.read()
        return proc, int(line.split(":")[2].split("/")[0])

    proc, port = start(0)
    try:
        assert port != 0
        for _ in range(20):
            try:
                assert call(port, "GET", "/healthz")[0] == 200
                break
            except OSError:
                import time

                time.sleep(0.1)
        call(port, "GET", "/api/model")  # a connection the server closes: TIME_WAIT on its side
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    again, same = start(port)  # at once, on the same port
    try:
        assert same == port
    finally:
        again.send_signal(signal.SIGINT)
        again.wait(timeout=30)
