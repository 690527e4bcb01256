"""The web app's page in a real browser: Debian's Chromium driven by Playwright (never a downloaded browser).

Uploads generated captchas by file picker, drag and drop and paste, reads the text the page shows and
checks it against the API. The screenshot goes to docs/webapp.png when the page serves a real model
(WEBAPP_CHECKPOINT=path, or the shipped weights/default.pt); with the untrained test model it stays in
the test's temporary folder, so a plain test run leaves the README's picture alone. The labelling page
(app.py --label_dir) is labelled with the keyboard alone, and its answers checked in labels.tsv and unreadable.txt.
"""
import base64
import json
import os
import urllib.request

import pytest

from conftest import ROOT
from test_app import captchas, post_file, serve, untrained_checkpoint

CHROMIUM = "/usr/bin/chromium"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                 reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")]


def real_checkpoint():
    path = os.environ.get("WEBAPP_CHECKPOINT") or os.path.join(ROOT, "weights", "default.pt")
    return path if os.path.exists(path) else None


def wait_done(page, count):
    """Wait until `count` result cards have an answer (or an error)."""
    # a function, not an expression: an expression is evaluated with eval, which the page's CSP refuses
    page.wait_for_function(f"() => document.querySelectorAll('.result:not([data-state=pending])').length >= {count}",
                           timeout=30_000)


def card_texts(page):
    """{file name: text shown} for the answered cards."""
    names = page.eval_on_selector_all(".result[data-state=done] .name", "els => els.map(e => e.textContent)")
    texts = page.eval_on_selector_all(".result[data-state=done] .text", "els => els.map(e => e.textContent)")
    return {n.split(" · ")[0]: t for n, t in zip(names, texts)}


def test_page_reads_captchas_like_the_api(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    checkpoint = real_checkpoint() or untrained_checkpoint(tmp_path / "web.pt")
    paths = captchas(tmp_path / "images", 4, seed=11)
    names = [os.path.basename(p) for p in paths]
    raws = [open(p, "rb").read() for p in paths]
    (tmp_path / "notes.txt").write_text("not an image")

    with serve(checkpoint, tmp_path / "server.log") as (url, _), sync_api.sync_playwright() as pw:
        expected = {name: post_file(url + "/api/predict", raw)[1]["text"] for name, raw in zip(names, raws)}
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            outside, errors = [], []
            page.on("request", lambda r: None if r.url.startswith(url) or r.url.startswith("data:")
                    or r.url.startswith("blob:") else outside.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_function("() => document.getElementById('model-name').textContent.includes('head')")
            with urllib.request.urlopen(url + "/api/model") as r:
                model = json.loads(r.read())
            assert page.text_content("#model-charset") == model["charset"]
            assert page.text_content("#model-checkpoint") == model["checkpoint"]
            assert page.text_content("#model-size") == "160 × 60 × 1"

            # file picker, one image
            page.set_input_files("#files", paths[0])
            wait_done(page, 1)
            assert card_texts(page) == {names[0]: expected[names[0]]}
            assert page.locator(".result .chars .char").count() == len(expected[names[0]])
            assert "%" in page.text_content(".result .confidence")

            # drag and drop of two images at once
            files = [[name, base64.b64encode(raw).decode()] for name, raw in zip(names[1:3], raws[1:3])]
            transfer = page.evaluate_handle("""files => {
                const dt = new DataTransfer();
                for (const [name, b64] of files) {
                    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                    dt.items.add(new File([bytes], name, {type: "image/png"}));
                }
                return dt;
            }""", files)
            page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
            wait_done(page, 3)

            # paste from the clipboard
            page.evaluate("""([name, b64]) => {
                const dt = new DataTransfer();
                dt.items.add(new File([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], name, {type: "image/png"}));
                document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true}));
            }""", [names[3], base64.b64encode(raws[3]).decode()])
            wait_done(page, 4)
            assert card_texts(page) == expected

            # a file that is not an image: the server's message is shown on its card
            page.set_input_files("#files", str(tmp_path / "notes.txt"))
            wait_done(page, 5)
            assert "not an image" in page.text_content(".result[data-state=error] .error")
            assert "4 read, 1 refused" in page.text_content("#summary")

            shot = os.path.join(ROOT, "docs", "webapp.png") if real_checkpoint() else str(tmp_path / "webapp.png")
            os.makedirs(os.path.dirname(shot), exist_ok=True)
            page.screenshot(path=shot, full_page=True)
            assert open(shot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
            assert not errors, errors
            assert not outside, f"the page fetched from outside: {outside}"
        finally:
            browser.close()


def shown_file(page, name):
    """Wait until the labelling page shows the image `name`."""
    try:
        page.wait_for_function("name => document.getElementById('file').textContent === name && "
                               "document.activeElement === document.getElementById('answer')", arg=name, timeout=30_000)
    except Exception:
        raise AssertionError(f"expected {name}; the page shows {page.text_content('#file')!r}, message "
                             f"{page.text_content('#message')!r}") from None


def test_labelling_page_with_the_keyboard(tmp_path):
    """Enter accepts the model's reading, typing replaces it, Ctrl+Enter marks unreadable, Escape skips (the image
    comes back after the others); the answers land in labels.tsv and unreadable.txt."""
    sync_api = pytest.importorskip("playwright.sync_api")
    checkpoint = untrained_checkpoint(tmp_path / "label_best.pt")
    folder = tmp_path / "unlabelled"
    captchas(folder, 5, seed=21)

    with serve(checkpoint, tmp_path / "server.log", f"--label_dir={folder}") as (url, _), \
            sync_api.sync_playwright() as pw:
        with urllib.request.urlopen(url + "/api/label/next?count=10") as r:
            order = json.loads(r.read())["items"]  # least confident first
        assert len(order) == 5
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            outside, errors = [], []
            page.on("request", lambda r: None if r.url.startswith(url) or r.url.startswith("data:")
                    else outside.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/label")

            first = order[0]
            shown_file(page, first["file"])
            assert page.input_value("#answer") == first["text"]  # the model's reading, typed in
            assert page.evaluate("() => document.getElementById('answer').selectionEnd") == len(first["text"])
            assert page.locator("#chars .c").count() == len(first["text"])
            assert "%" in page.text_content("#chars") and "sure" in page.text_content("#suggestion")
            assert page.evaluate("() => getComputedStyle(document.getElementById('captcha')).imageRendering") == \
                "pixelated"
            assert page.evaluate("() => document.getElementById('captcha').getBoundingClientRect().width") >= 480
            page.keyboard.press("Enter")  # accept the suggestion

            shown_file(page, order[1]["file"])
            page.keyboard.press("Escape")  # skip: nothing written

            shown_file(page, order[2]["file"])
            page.keyboard.type("Ab12")  # replaces the selected suggestion
            page.keyboard.press("Enter")

            shown_file(page, order[3]["file"])
            page.keyboard.press("Control+Enter")  # unreadable

            shown_file(page, order[4]["file"])
            page.keyboard.press("Escape")
            shown_file(page, order[1]["file"])  # the skipped image is back, after the others
            page.wait_for_function("() => document.getElementById('counter').textContent.includes('3 / 5')")
            assert "2 labelled, 1 unreadable" in page.text_content("#counter")
            assert "2 remaining" in page.text_content("#counter")
            assert "per minute" in page.text_content("#rate") and "3 answered" in page.text_content("#rate")
            assert page.eval_on_selector_all("#recent li .what", "els => els.map(e => e.textContent)") == \
                ["unreadable", "Ab12", first["text"]]
            page.screenshot(path=os.environ.get("LABEL_SCREENSHOT") or str(tmp_path / "label.png"), full_page=True)
            assert not errors, errors
            assert not outside, f"the page fetched from outside: {outside}"
        finally:
            browser.close()
    assert open(folder / "labels.tsv", encoding="utf-8").read() == \
        f"file\tlabel\n{first['file']}\t{first['text']}\n{order[2]['file']}\tAb12\n"
    assert open(folder / "unreadable.txt", encoding="utf-8").read() == f"{order[3]['file']}\n"
