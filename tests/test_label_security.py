"""The labelling server (app.py --label_dir, serve/labelling.py, plumbing.SameOrigin) against hostile folders and
hostile pages: links out of the folder are never listed, served or written through; only the page it served can
answer (Host, Origin, Content-Type, token); its answers carry security headers; deleted images and answers taken
out by hand are followed without a restart; a killed server leaves no temporary files. The page in a browser
under these headers: test_browser.py."""
import json
import multiprocessing
import os
import re
import signal
import time
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import app as webapp
from core import data
from conftest import ROOT
from serve import labelling, plumbing
from test_app import check_error, serve, untrained_checkpoint
from test_label import HEADER, answer, client_for, page_token, pngs, read

SECRET = b"\x89PNG\r\n\x1a\n outside the labelling folder"

pytestmark = pytest.mark.usefixtures("no_teacher")  # conftest: the page without a teacher


def outside(tmp_path, name="secret.png", raw=SECRET):
    """A file outside the labelling folder, named like an image."""
    path = tmp_path / name
    path.write_bytes(raw)
    return str(path)


def listed(c):
    return [i["file"] for i in c.get("/api/label/next?count=50").json()["items"]]


# --- 1. links out of the folder: never listed, never served ---------------------------------------------------

def test_links_in_the_folder_are_never_listed_or_served(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png"])
    secret = outside(tmp_path)
    (tmp_path / "outer").mkdir()
    os.symlink(secret, os.path.join(folder, "link.png"))                 # to a file outside
    os.symlink("../secret.png", os.path.join(folder, "relative.png"))    # the same, relative
    os.symlink(str(tmp_path / "outer"), os.path.join(folder, "dir.png"))  # to a folder outside
    os.symlink("/etc/passwd", os.path.join(folder, "passwd.png"))
    os.symlink("a.png", os.path.join(folder, "inner.png"))              # even to an image of the folder
    os.mkfifo(os.path.join(folder, "fifo.png"))
    messages = []
    with client_for(folder, messages=messages) as c:
        assert listed(c) == ["a.png", "b.png"]
        assert c.get("/api/label/stats").json()["total"] == 2
        for name in ("link.png", "relative.png", "dir.png", "passwd.png", "inner.png", "fifo.png"):
            r = c.get("/api/label/image", params={"file": name})
            check_error(r, 404, "no image")
            assert SECRET not in r.content
            check_error(answer(c, name, "AB"), 404, "no image")
        assert c.get("/api/label/image", params={"file": "a.png"}).content == open(os.path.join(folder, "a.png"),
                                                                                    "rb").read()
    assert any("left out 5 symbolic link(s)" in m and "'link.png'" in m for m in messages), messages
    assert sorted(os.listdir(folder)) == sorted(["a.png", "b.png", "link.png", "relative.png", "dir.png",
                                                 "passwd.png", "inner.png", "fifo.png"])  # nothing written


def test_an_image_swapped_for_a_link_or_a_fifo_after_start_is_refused(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png", "c.png"])
    secret = outside(tmp_path)
    with client_for(folder) as c:
        assert listed(c) == ["a.png", "b.png", "c.png"]
        os.remove(os.path.join(folder, "b.png"))
        os.symlink(secret, os.path.join(folder, "b.png"))  # swapped after the listing
        os.remove(os.path.join(folder, "c.png"))
        os.mkfifo(os.path.join(folder, "c.png"))          # would hang a plain open()
        r = c.get("/api/label/image", params={"file": "b.png"})
        check_error(r, 404, "symbolic link")
        assert SECRET not in r.content
        check_error(c.get("/api/label/image", params={"file": "c.png"}), 404, "no longer a regular file")
        assert listed(c) == ["a.png"]
        check_error(answer(c, "b.png", "AB"), 404, "no longer in")
        check_error(answer(c, "c.png"), 404, "no longer in")
    assert not os.path.exists(os.path.join(folder, "labels.tsv"))
    assert not os.path.exists(os.path.join(folder, "unreadable.txt"))
    # the check on the descriptor itself, whatever the listing said
    with pytest.raises(plumbing.ApiError, match="symbolic link"):
        labelling.open_image(folder, "b.png")
    f, st = labelling.open_image(folder, "a.png")
    with f:
        assert f.read() == open(os.path.join(folder, "a.png"), "rb").read() and st.st_size > 0


# --- 2. cross-site writes: JSON only, the server's own Host and origin, the page's token -------------------

def test_answers_are_taken_only_as_json(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png"])
    body = json.dumps({"file": "a.png", "label": "AB"})
    with client_for(folder) as c:
        for url in ("/api/label/answer", "/api/label/skip"):
            # what a form on another site can send without asking the server first
            check_error(c.post(url, data={"file": "a.png", "label": "AB"}), 415, "application/json")
            check_error(c.post(url, content=body, headers={"content-type": "text/plain"}), 415, "'text/plain'")
            check_error(c.post(url, files={"file": ("a.png", b"x")}), 415, "multipart/form-data")
            check_error(c.post(url, content=body, headers={"content-type": ""}), 415, "(none)")
        assert c.post("/api/label/answer", content=body,
                      headers={"content-type": "application/json; charset=utf-8"}).status_code == 200
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tAB\n"


def test_answers_need_the_token_of_the_page(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png"])
    with client_for(folder) as c, client_for(folder) as other:
        page = c.get("/label").text
        token = page_token(page)
        assert len(token) >= 40 and token == c.headers["X-Label-Token"]
        assert token != other.headers["X-Label-Token"]  # each start its own
        assert '<script src="/static/label.js"></script>' in page
        body = {"file": "a.png", "label": "AB"}
        del c.headers["X-Label-Token"]
        for url in ("/api/label/answer", "/api/label/skip"):
            check_error(c.post(url, json=body), 403, "no X-Label-Token header")
            for wrong in ("x", token[:-1], other.headers["X-Label-Token"], token + "x", token.upper()):
                check_error(c.post(url, json=body, headers={"X-Label-Token": wrong}), 403, "wrong X-Label-Token",
                            "reload /label")
        assert not os.path.exists(os.path.join(folder, "labels.tsv"))
        assert c.post("/api/label/answer", json=body, headers={"X-Label-Token": token}).status_code == 200
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tAB\n"


LABEL_REQUESTS = [("GET", "/label", None), ("GET", "/api/label/next", None), ("GET", "/api/label/stats", None),
                  ("GET", "/api/label/image?file=a.png", None),
                  ("POST", "/api/label/skip", {"file": "a.png"}),
                  ("POST", "/api/label/answer", {"file": "a.png", "label": "AB"})]


def test_other_host_names_are_refused(tmp_path):
    """DNS rebinding: a site whose name resolves to 127.0.0.1 sends its own name in the Host header."""
    folder = pngs(tmp_path / "f", ["a.png"])
    with client_for(folder) as c:
        port = c.app.state.origin.port
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", f"localhost.evil.example:{port}",
                     f"127.0.0.1.nip.io:{port}", f"user@127.0.0.1:{port}", "", f"127.0.0.1:{port}/x"):
            for method, url, body in LABEL_REQUESTS:
                r = c.request(method, url, json=body, headers={"host": host})
                check_error(r, 403, "not a name of this server", "DNS rebinding")
                assert r.headers["x-frame-options"] == "DENY"
        assert not os.path.exists(os.path.join(folder, "labels.tsv"))
        assert c.get("/healthz", headers={"host": "evil.example"}).status_code == 200  # the reader: stateless
        for host in (f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
            assert c.get("/api/label/stats", headers={"host": host}).status_code == 200
        assert answer(c, "a.png", "AB").status_code == 200

    origin = plumbing.Origin("0.0.0.0", 8080)  # every interface: any IP address, no other name
    assert origin.names("192.168.1.5:8080") and origin.names("[fe80::1]:8080") and origin.names("localhost:8080")
    assert not origin.names("evil.example:8080") and not origin.names("192.168.1.5:8081")
    origin = plumbing.Origin("captcha.lan", 80)
    assert origin.names("captcha.lan") and origin.names("captcha.lan:80") and origin.names("127.0.0.1")
    assert not origin.names("192.168.1.5") and not origin.names("evil.example")
    # the port and host the server is started on are those that count
    app = webapp.create_app(None, label_dir=folder, say=lambda m: None)
    plumbing.server_config(app, "127.0.0.1", 8123)
    with TestClient(app, base_url="http://127.0.0.1:8123") as c:
        assert c.get("/api/label/stats").status_code == 200
        check_error(c.get("/api/label/stats", headers={"host": "127.0.0.1:8000"}), 403, "127.0.0.1:8123")


def test_requests_from_other_origins_are_refused(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png"])
    with client_for(folder) as c:
        port = c.app.state.origin.port
        foreign = [{"origin": "http://evil.example"}, {"origin": f"http://evil.example:{port}"},
                   {"origin": "null"}, {"origin": f"http://127.0.0.1:{port + 1}"}, {"origin": "file://127.0.0.1"},
                   {"referer": "http://evil.example/page.html"}, {"referer": f"http://127.0.0.1:{port + 1}/"},
                   {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}]
        for headers in foreign:
            for method, url, body in LABEL_REQUESTS[1:]:
                r = c.request(method, url, json=body, headers=headers)
                check_error(r, 403, "only from its own page")
        assert not os.path.exists(os.path.join(folder, "labels.tsv"))
        # the page itself may be opened by a link from anywhere: it holds nothing another site can read
        assert c.get("/label", headers={"referer": "http://evil.example/", "sec-fetch-site": "cross-site"}) \
            .status_code == 200
        own = {"origin": f"http://127.0.0.1:{port}", "referer": f"http://localhost:{port}/label",
               "sec-fetch-site": "same-origin"}
        assert c.get("/api/label/next", headers=own).status_code == 200
        assert c.post("/api/label/answer", json={"file": "a.png", "label": "AB"}, headers=own).status_code == 200
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tAB\n"


@pytest.mark.slow
def test_a_real_server_refuses_other_hosts_and_takes_the_pages_answers(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png"])
    weights = tmp_path / "weights"
    weights.mkdir()
    untrained_checkpoint(weights / "default.pt")
    with serve(f"--label_dir={folder}", tmp_path / "server.log", f"--weights_dir={weights}", "--teacher=") as (url, _):
        port = url.rsplit(":", 1)[1]

        def post(body, **headers):
            request = urllib.request.Request(url + "/api/label/answer", json.dumps(body).encode(), headers)
            try:
                with urllib.request.urlopen(request) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        with urllib.request.urlopen(url + "/label") as r:
            token = page_token(r.read().decode())
            assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
        status, got = post({"file": "a.png", "label": "Q"}, **{"Content-Type": "application/json",
                                                               "X-Label-Token": token, "Host": "evil.example:" + port})
        assert status == 403 and "not a name of this server" in got["error"]
        status, got = post({"file": "a.png", "label": "Q"}, **{"Content-Type": "text/plain", "X-Label-Token": token})
        assert status == 415
        status, got = post({"file": "a.png", "label": "Q"}, **{"Content-Type": "application/json"})
        assert status == 403 and "no X-Label-Token" in got["error"]
        status, got = post({"file": "a.png", "label": "Q"}, **{"Content-Type": "application/json",
                                                               "X-Label-Token": token, "Origin": url})
        assert status == 200 and got["stats"]["remaining"] == 1
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tQ\n"


# --- 3. security headers --------------------------------------------------------------------------------------

def test_the_page_and_the_api_carry_security_headers(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png"])
    with client_for(folder) as c:
        answers = [c.get("/label"), c.get("/api/label/next"), c.get("/api/label/stats"),
                   c.get("/api/label/image", params={"file": "a.png"}), answer(c, "a.png", "AB"),
                   answer(c, "a.png", "AB"), answer(c, "nope.png", "AB"),
                   c.post("/api/label/skip", json={"file": "b.png"}),
                   c.get("/api/label/next?count=0"), c.get("/api/label/nothing"),
                   c.post("/api/label/answer", json={}, headers={"X-Label-Token": "x"}),
                   c.get("/label", headers={"host": "evil.example"})]
        assert [r.status_code for r in answers] == [200, 200, 200, 200, 200, 409, 404, 200, 400, 404, 403, 403]
        for r in answers:
            h = r.headers
            assert h["x-frame-options"] == "DENY", r.url
            assert h["x-content-type-options"] == "nosniff"
            assert h["cache-control"] == "no-store"
            assert h["referrer-policy"] == "no-referrer"
            csp = [p.strip() for p in h["content-security-policy"].split(";")]
            for rule in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                         "connect-src 'self'", "frame-ancestors 'none'", "form-action 'none'", "base-uri 'none'"):
                assert rule in csp, (rule, csp)
            assert "unsafe" not in h["content-security-policy"]
        assert answers[3].headers["content-type"] == "image/png"
        assert answers[3].headers["content-length"] == str(os.path.getsize(os.path.join(folder, "a.png")))
        # the reader's own page and API are left as they are (its /docs loads Swagger UI from a CDN)
        assert "content-security-policy" not in c.get("/healthz").headers
    # nothing on the page that this policy would block: scripts and styles are files of web/ only
    page = open(os.path.join(ROOT, "web", "label.html"), encoding="utf-8").read()
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/label.js">']
    assert not re.search(r"<script[^>]*>\s*[^\s<]", page)  # no inline code
    assert "<style" not in page and not re.search(r"\sstyle\s*=", page)
    assert not re.search(r"\son[a-z]+\s*=", page)  # no inline event handlers
    assert not re.search(r"javascript:", page + open(os.path.join(ROOT, "web", "label.js")).read())
    script = open(os.path.join(ROOT, "web", "label.js"), encoding="utf-8").read()
    assert "setAttribute(\"style\"" not in script and "innerHTML" not in script and "eval(" not in script


# --- 4. answer files that are links: refused at start, never appended through -----------------------------

@pytest.mark.parametrize("name", [data.LABELS_FILE, data.UNREADABLE_FILE])
def test_an_answer_file_that_is_a_link_stops_the_start(tmp_path, name):
    folder = pngs(tmp_path / "f", ["a.png"])
    target = tmp_path / "elsewhere.txt"
    link = os.path.join(folder, name)
    for dangling in (False, True):
        if dangling:
            target.unlink()
        else:
            target.write_text("")
        os.symlink(str(target), link)
        with pytest.raises(data.DataError) as e:
            webapp.create_app(None, label_dir=folder, say=lambda m: None)
        message = str(e.value)
        assert "\n" not in message and link in message and "is a symbolic link" in message
        assert message.endswith("replace the link with a regular file")
        assert target.exists() != dangling and (dangling or target.read_text() == "")  # nothing created or written
        os.remove(link)
    # a hard link is the same file under another name, maybe outside the folder
    target.write_text("")
    os.link(str(target), link)
    with pytest.raises(data.DataError, match="has 2 hard links.*a regular file of its own"):
        webapp.create_app(None, label_dir=folder, say=lambda m: None)


def test_an_answer_file_swapped_for_a_link_after_start_is_never_appended_through(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png", "c.png"])
    tsv, txt = os.path.join(folder, "labels.tsv"), os.path.join(folder, "unreadable.txt")
    target = tmp_path / "elsewhere.txt"
    target.write_text("mine\n")
    with client_for(folder) as c:
        assert answer(c, "a.png", "AB").status_code == 200
        os.remove(tsv)
        os.symlink(str(target), tsv)
        check_error(answer(c, "b.png", "CD"), 500, "is a symbolic link", "replace the link with a regular file")
        os.symlink(str(tmp_path / "created.txt"), txt)  # dangling: an O_CREAT open would create its target
        check_error(answer(c, "c.png"), 500, "is a symbolic link")
        assert target.read_text() == "mine\n" and not (tmp_path / "created.txt").exists()
        # the descriptor-level check, should a link appear between the check and the open
        store = labelling.LabelStore.__new__(labelling.LabelStore)
        store.seen = {}
        with pytest.raises(plumbing.ApiError, match="symbolic link"):
            store._append(tsv, "b.png\tCD\n", HEADER, None)
        with pytest.raises(plumbing.ApiError, match="symbolic link"):
            store._append(txt, "c.png\n", "", None)
        assert target.read_text() == "mine\n" and not (tmp_path / "created.txt").exists()
        os.remove(tsv)
        os.remove(txt)  # replaced: answers are taken again
        assert answer(c, "b.png", "CD").status_code == 200
    assert read(tsv) == HEADER + "b.png\tCD\n"


# --- 5. images deleted after start; answers taken out by hand ------------------------------------------------

def test_an_image_deleted_after_start_is_refused(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png", "c.png"])
    with client_for(folder) as c:
        assert listed(c) == ["a.png", "b.png", "c.png"]
        os.remove(os.path.join(folder, "b.png"))
        assert listed(c) == ["a.png", "c.png"]
        check_error(answer(c, "b.png", "AB"), 404, "b.png is no longer in", "nothing was written")
        check_error(answer(c, "b.png"), 404, "no longer in")
        check_error(c.post("/api/label/skip", json={"file": "b.png"}), 404, "no longer in")
        check_error(c.get("/api/label/image", params={"file": "b.png"}), 404, "no longer in")
        assert answer(c, "a.png", "AB").status_code == 200
        pngs(tmp_path / "f", ["b.png"])  # back again: offered and answered as before
        assert listed(c) == ["b.png", "c.png"]
        assert answer(c, "b.png", "CD").status_code == 200
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tAB\nb.png\tCD\n"
    assert not os.path.exists(os.path.join(folder, "unreadable.txt"))


def test_an_answer_taken_out_by_hand_is_offered_again(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png", "c.png", "d.png"])
    tsv, txt = os.path.join(folder, "labels.tsv"), os.path.join(folder, "unreadable.txt")
    with client_for(folder) as c:
        assert answer(c, "a.png", "AB").status_code == 200
        assert answer(c, "b.png", "CD").status_code == 200
        assert answer(c, "c.png").status_code == 200
        assert listed(c) == ["d.png"]
        with open(tsv, "w") as f:  # a.png's answer taken out in an editor (a smaller file)
            f.write(HEADER + "b.png\tCD\n")
        assert listed(c) == ["d.png", "a.png"]
        assert c.get("/api/label/stats").json()["labelled"] == 1
        with open(txt, "w") as f:  # unreadable.txt emptied
            f.write("")
        assert listed(c) == ["d.png", "a.png", "c.png"]
        assert answer(c, "a.png", "XY").status_code == 200
        assert answer(c, "c.png", "ZZ").status_code == 200
        time.sleep(0.05)  # past the file system's clock tick: an edit of the same size shows in the mtime
        with open(tsv, "r+") as f:  # the same size
            text = f.read()
            f.seek(0)
            f.write(text.replace("b.png\tCD\n", "d.png\tCD\n"))
        assert listed(c) == ["b.png"]
        check_error(answer(c, "d.png", "QQ"), 409, "'CD'")
    assert read(tsv) == HEADER + "d.png\tCD\na.png\tXY\nc.png\tZZ\n"


# --- 6. temporary files: none, even when killed ---------------------------------------------------------------

def answer_forever(folder, ready):
    store = labelling.LabelStore(folder)
    i = 0
    while True:
        for name in sorted(os.listdir(folder)):
            if name.endswith(".png") and not store.answered(name):
                store.answer(name, None if i % 3 == 0 else f"L{i}")
                i += 1
                if i == 20:
                    ready.set()
                break
        else:
            ready.set()
            time.sleep(1)


@pytest.mark.slow
def test_a_killed_labelling_server_leaves_no_temporary_files(tmp_path):
    """Answers are appended in place (one write each): a process killed at any point leaves whole lines and no
    *.tmp; the next server reads them and goes on."""
    names = [f"img{i:04d}.png" for i in range(400)]
    folder = pngs(tmp_path / "f", names)
    context = multiprocessing.get_context("fork")
    for _ in range(3):
        ready = context.Event()
        process = context.Process(target=answer_forever, args=(folder, ready))
        process.start()
        assert ready.wait(60)
        os.kill(process.pid, signal.SIGKILL)
        process.join(10)
        assert sorted(os.listdir(folder)) == sorted(names + ["labels.tsv", "unreadable.txt"])
        store = labelling.LabelStore(folder)  # reads: every line whole
        assert all(label.startswith("L") for label in store.labels.values())
        assert read(os.path.join(folder, "labels.tsv")).endswith("\n")
        assert read(os.path.join(folder, "unreadable.txt")).endswith("\n")
    answered = len(store.labels) + len(store.unreadable)
    assert 60 <= answered <= len(names)
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp") or n.startswith(".")]
