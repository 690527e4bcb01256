"""The labelling page's server side (app.py --label_dir, serve/labelling.py): answers appended to labels.tsv and
unreadable.txt exactly once, whatever the threads, processes or restarts; bad requests refused with a message;
least confident first with a model, file-name order without one. The page itself: test_browser.py."""
import codecs
import json
import multiprocessing
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import app as webapp
import config
from core import data
from core.inference import Predictor
from conftest import ROOT
from serve import labelling
from test_app import captchas, check_error, serve, untrained_checkpoint

HEADER = "file\tlabel\n"

pytestmark = pytest.mark.usefixtures("no_teacher")  # conftest: the page without a teacher


def pngs(folder, names):
    """Tiny distinct PNG (or other format by extension) files `names` in `folder`; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("L", (40, 16), (i * 37) % 256).save(os.path.join(folder, name))
    return str(folder)


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8")


def page_token(text):
    """The token the labelling page sends with its answers (X-Label-Token), from the page's HTML."""
    return re.search(r'<meta name="label-token" content="([^"]+)">', text).group(1)


def client_for(folder, predictor=None, messages=None):
    """A test client of an app labelling `folder` that sends what the page sends: the Host the server was started
    on (127.0.0.1), the page's token; JSON bodies (json=) are Content-Type: application/json."""
    say = messages.append if messages is not None else (lambda m: None)
    app = webapp.create_app(predictor, label_dir=str(folder), say=say)
    c = TestClient(app, base_url=f"http://127.0.0.1:{app.state.origin.port}")
    c.headers["X-Label-Token"] = page_token(c.get("/label").text)
    return c


def answer(c, name, label=None):
    body = {"file": name, "unreadable": True} if label is None else {"file": name, "label": label}
    return c.post("/api/label/answer", json=body)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return untrained_checkpoint(tmp_path_factory.mktemp("labelckpt") / "label_best.pt")


# --- answers on disk ---------------------------------------------------------------------------------------

def test_answers_are_appended_as_lines_and_kept_in_case(tmp_path):
    folder = pngs(tmp_path / "f", ["b.png", "a.png", "c.jpg", "d.png", ".hidden.png"])
    (tmp_path / "f" / "notes.txt").write_text("not an image")
    with client_for(folder) as c:
        items = c.get("/api/label/next?count=10").json()["items"]
        assert [i["file"] for i in items] == ["a.png", "b.png", "c.jpg", "d.png"]  # file-name order, no model
        assert answer(c, "a.png", "Ab3x").json()["label"] == "Ab3x"
        assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tAb3x\n"
        assert not os.path.exists(os.path.join(folder, "unreadable.txt"))
        got = answer(c, "c.jpg").json()
        assert got["unreadable"] is True and got["stats"]["unreadable"] == 1
        assert read(os.path.join(folder, "unreadable.txt")) == "c.jpg\n"
        stats = answer(c, "d.png", "ÄÖ-ü 7").json()["stats"]  # any visible text, inner spaces too, as typed
        assert (stats["total"], stats["labelled"], stats["unreadable"], stats["answered"], stats["remaining"]) == \
            (4, 2, 1, 3, 1)
        assert [r["file"] for r in stats["recent"]] == ["d.png", "c.jpg", "a.png"]
        assert [i["file"] for i in c.get("/api/label/next?count=10").json()["items"]] == ["b.png"]
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tAb3x\nd.png\tÄÖ-ü 7\n"
    assert read(os.path.join(folder, "unreadable.txt")) == "c.jpg\n"
    # what training reads: the labelled images, the rest not listed
    assert sorted(data.read_tsv(folder, os.path.join(folder, "labels.tsv"))) == \
        [(os.path.join(folder, "a.png"), "Ab3x"), (os.path.join(folder, "d.png"), "ÄÖ-ü 7")]


def bad_answers():
    return [
        ({"file": "nope.png", "label": "AB"}, 404, "no image 'nope.png'"),
        ({"file": "../a.png", "label": "AB"}, 400, "not a path"),
        ({"file": "..", "label": "AB"}, 400, "not a path"),
        ({"file": "sub/a.png", "label": "AB"}, 400, "not a path"),
        ({"file": "sub\\a.png", "label": "AB"}, 400, "not a path"),
        ({"file": "/etc/passwd", "label": "AB"}, 400, "not a path"),
        ({"file": "", "label": "AB"}, 400, "'file' must be"),
        ({"file": 3, "label": "AB"}, 400, "'file' must be"),
        ({"label": "AB"}, 400, "'file' must be"),
        ({"file": "a.png", "label": "A\tB"}, 400, "a TAB"),
        ({"file": "a.png", "label": "A\nB"}, 400, "a newline"),
        ({"file": "a.png", "label": "AB\r"}, 400, "carriage return"),
        ({"file": "a.png", "label": "A\u200bB"}, 400, "U+200B"),
        ({"file": "a.png", "label": "A\x07B"}, 400, "U+0007"),
        ({"file": "a.png", "label": ""}, 400, "empty"),
        ({"file": "a.png", "label": " AB"}, 400, "leading or trailing spaces"),
        ({"file": "a.png", "label": "AB "}, 400, "leading or trailing spaces"),
        ({"file": "a.png", "label": "A" * 101}, 400, "limit is 100"),
        ({"file": "a.png", "label": 12}, 400, "must be text"),
        ({"file": "a.png"}, 400, "no 'label'"),
        ({"file": "a.png", "label": "AB", "unreadable": True}, 400, "not both"),
        ({"file": "a.png", "unreadable": "yes"}, 400, "true or false"),
    ]


def test_bad_requests_are_refused_and_write_nothing(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png"])
    (tmp_path / "secret.png").write_bytes(b"outside")
    with client_for(folder) as c:
        for body, status, words in bad_answers():
            check_error(c.post("/api/label/answer", json=body), status, words)
        check_error(c.post("/api/label/answer", content=b"{not json", headers={"content-type": "application/json"}),
                    400, "not valid JSON")
        check_error(c.post("/api/label/answer", json=["a.png", "AB"]), 400, "JSON object")
        check_error(c.post("/api/label/answer", content=b'{"file": "a.png", "label": "\\ud800"}',
                           headers={"content-type": "application/json"}), 400, "U+D800")
        assert sorted(os.listdir(folder)) == ["a.png", "b.png"]  # nothing written by any refusal

        # the image endpoint: only the folder's images, by bare name
        assert c.get("/api/label/image", params={"file": "a.png"}).content == open(os.path.join(folder, "a.png"),
                                                                                    "rb").read()
        assert c.get("/api/label/image", params={"file": "a.png"}).headers["content-type"] == "image/png"
        check_error(c.get("/api/label/image", params={"file": "../secret.png"}), 400, "not a path")
        check_error(c.get("/api/label/image", params={"file": os.path.join(str(tmp_path), "secret.png")}), 400,
                    "not a path")
        check_error(c.get("/api/label/image", params={"file": "secret.png"}), 404, "no image")
        check_error(c.get("/api/label/image"), 422, "file")
        check_error(c.get("/api/label/next?count=0"), 400, "1 to 50")
        check_error(c.get("/api/label/next?count=51"), 400, "1 to 50")
        check_error(c.get("/api/label/next?count=many"), 422, "count")

        # answered: 409 with the existing answer, for a label, unreadable or a skip; nothing changes
        assert answer(c, "a.png", "AB").status_code == 200
        for body in ({"file": "a.png", "label": "AB"}, {"file": "a.png", "label": "XY"}, {"file": "a.png", "unreadable": True}):
            r = c.post("/api/label/answer", json=body)
            check_error(r, 409, "already answered", "'AB'")
            assert r.json()["existing"] == {"label": "AB"}
        assert answer(c, "b.png").status_code == 200
        r = answer(c, "b.png", "CD")
        check_error(r, 409, "already answered in unreadable.txt")
        assert r.json()["existing"] == {"unreadable": True}
        check_error(c.post("/api/label/skip", json={"file": "a.png"}), 409, "already answered")
        check_error(c.post("/api/label/skip", json={"file": "x.png"}), 404, "no image")
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tAB\n"
    assert read(os.path.join(folder, "unreadable.txt")) == "b.png\n"


def test_a_restart_goes_on_with_the_unanswered_images(tmp_path):
    folder = pngs(tmp_path / "f", [f"{i:02d}.png" for i in range(6)])
    with client_for(folder) as c:
        assert answer(c, "00.png", "A").status_code == 200
        assert answer(c, "03.png").status_code == 200
        assert c.post("/api/label/skip", json={"file": "01.png"}).json()["skipped"] is True
        assert [i["file"] for i in c.get("/api/label/next?count=9").json()["items"]] == \
            ["02.png", "04.png", "05.png", "01.png"]  # the skipped image comes back at the end
    with client_for(folder) as c:  # a new server over the same folder: a skip is forgotten, answers are not
        assert [i["file"] for i in c.get("/api/label/next?count=9").json()["items"]] == \
            ["01.png", "02.png", "04.png", "05.png"]
        stats = c.get("/api/label/stats").json()
        assert (stats["labelled"], stats["unreadable"], stats["remaining"], stats["recent"]) == (1, 1, 4, [])
        assert answer(c, "00.png", "B").status_code == 409
        assert answer(c, "03.png").status_code == 409
        assert answer(c, "01.png", "C").status_code == 200
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "00.png\tA\n01.png\tC\n"
    assert read(os.path.join(folder, "unreadable.txt")) == "03.png\n"


def test_answers_from_another_server_are_seen(tmp_path):
    """Two servers over one folder: neither offers what the other answered, nor writes it again."""
    folder = pngs(tmp_path / "f", ["a.png", "b.png", "c.png"])
    with client_for(folder) as one, client_for(folder) as two:
        assert answer(one, "a.png", "A").status_code == 200
        assert answer(one, "b.png").status_code == 200
        assert [i["file"] for i in two.get("/api/label/next?count=9").json()["items"]] == ["c.png"]
        assert two.get("/api/label/stats").json()["remaining"] == 1
        assert answer(two, "a.png", "Z").json()["existing"] == {"label": "A"}
        assert answer(two, "b.png", "Z").json()["existing"] == {"unreadable": True}
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tA\n"


def test_concurrent_answers_give_one_whole_line_each(tmp_path):
    """8 threads x 20 files over two app instances (two open files, two flocks, as two servers would have), and
    every thread answering one contested file too: 160 + 1 lines, none interleaved, none twice."""
    names = [f"img{i:03d}.png" for i in range(160)]
    folder = pngs(tmp_path / "f", names + ["contested.png"])
    with client_for(folder) as one, client_for(folder) as two:
        start = threading.Barrier(8)

        def work(t):
            c = (one, two)[t % 2]
            start.wait()
            statuses = [answer(c, "contested.png", f"T{t}").status_code]
            for i in range(t, len(names), 8):
                body = {"file": names[i], "unreadable": True} if i % 5 == 0 else {"file": names[i], "label": f"L{i}"}
                statuses.append(c.post("/api/label/answer", json=body).status_code)
            return statuses

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
    assert sorted(r[0] for r in results) == [200] + [409] * 7
    assert all(s == 200 for r in results for s in r[1:])
    text = read(os.path.join(folder, "labels.tsv"))
    assert text.startswith(HEADER) and text.endswith("\n")
    lines = text[len(HEADER):].splitlines()
    contested = [line for line in lines if line.startswith("contested.png\t")]
    assert len(contested) == 1 and contested[0] in {f"contested.png\tT{t}" for t in range(8)}
    labelled = sorted(line for line in lines if not line.startswith("contested.png"))
    assert labelled == sorted(f"{n}\tL{i}" for i, n in enumerate(names) if i % 5)
    unreadable = read(os.path.join(folder, "unreadable.txt")).splitlines()
    assert sorted(unreadable) == [n for i, n in enumerate(names) if i % 5 == 0]


def race(folder, count, tag, barrier, results):
    """One of the racing processes: answer images 0..count-1 of `folder`; puts how many it wrote."""
    try:
        store = labelling.LabelStore(folder)
        barrier.wait(timeout=30)
        won = 0
        for i in range(count):
            try:
                store.answer(f"img{i:03d}.png", None if i % 4 == 0 else f"P{tag}")
                won += 1
            except labelling.AlreadyAnswered:
                pass
        results.put(won)
    except BaseException as e:  # e.g. a labels.tsv giving one image two labels: the test says so at once
        results.put(repr(e))


@pytest.mark.slow
def test_two_processes_answering_the_same_images_write_each_once(tmp_path):
    """Two processes race through the same 60 images: every image is written once, by one of them."""
    count = 60
    folder = pngs(tmp_path / "f", [f"img{i:03d}.png" for i in range(count)])
    context = multiprocessing.get_context("fork")  # the modules are imported already: no second of imports each
    barrier, results = context.Barrier(2), context.Queue()
    procs = [context.Process(target=race, args=(folder, count, tag, barrier, results)) for tag in "AB"]
    for p in procs:
        p.start()
    won = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert all(isinstance(w, int) for w in won) and sum(won) == count, won
    lines = read(os.path.join(folder, "labels.tsv")).splitlines()
    assert lines[0] == "file\tlabel" and len(lines) == 1 + count - count // 4
    assert sorted(line.split("\t")[0] for line in lines[1:]) == [f"img{i:03d}.png" for i in range(count) if i % 4]
    assert all(line.split("\t")[1] in ("PA", "PB") for line in lines[1:])
    assert sorted(read(os.path.join(folder, "unreadable.txt")).splitlines()) == \
        [f"img{i:03d}.png" for i in range(0, count, 4)]


def test_a_hand_written_labels_tsv_is_respected_and_appended_to(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png", "c.png", "d.png"])
    tsv = os.path.join(folder, "labels.tsv")
    original = codecs.BOM_UTF8 + b"file\tlabel\r\na.png\tAB\r\n\r\n b.png \t cd \r\nx.png\tGONE"  # no last newline
    with open(tsv, "wb") as f:
        f.write(original)
    with open(os.path.join(folder, "unreadable.txt"), "wb") as f:
        f.write(codecs.BOM_UTF8 + b"c.png\r\n")
    with client_for(folder) as c:
        assert [i["file"] for i in c.get("/api/label/next?count=9").json()["items"]] == ["d.png"]
        stats = c.get("/api/label/stats").json()
        assert (stats["labelled"], stats["unreadable"], stats["remaining"]) == (2, 1, 1)
        check_error(answer(c, "b.png", "XX"), 409, "'cd'")
        assert answer(c, "d.png", "Ef").status_code == 200
    with open(tsv, "rb") as f:
        assert f.read() == original + b"\nd.png\tEf\n"  # the unfinished last line ended first
    assert sorted(data.read_tsv(folder, tsv)) == [(os.path.join(folder, n), t) for n, t in
                                                   [("a.png", "AB"), ("b.png", "cd"), ("d.png", "Ef"), ("x.png", "GONE")]]


def test_a_broken_labels_tsv_stops_the_start_with_its_message(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png"])
    with open(os.path.join(folder, "labels.tsv"), "w") as f:
        f.write("a.png\tAB\na.png\tCD\n")
    with pytest.raises(data.DataError, match="two different labels"):
        webapp.create_app(None, label_dir=folder, say=lambda m: None)


def test_a_labels_tsv_edited_into_a_clash_is_said_and_nothing_written(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png"])
    tsv = os.path.join(folder, "labels.tsv")
    with client_for(folder) as c:
        assert answer(c, "a.png", "AB").status_code == 200
        with open(tsv, "a") as f:
            f.write("a.png\tCD\n")  # an editor gives a.png a second label
        check_error(answer(c, "b.png", "EF"), 500, "two different labels", "fix the file")
        check_error(c.get("/api/label/next"), 500, "two different labels")
        assert read(tsv) == HEADER + "a.png\tAB\na.png\tCD\n"
        with open(tsv, "w") as f:
            f.write(HEADER + "a.png\tCD\n")  # fixed
        assert answer(c, "b.png", "EF").status_code == 200
    assert read(tsv) == HEADER + "a.png\tCD\nb.png\tEF\n"


def test_file_names_labels_tsv_cannot_hold_are_left_out(tmp_path):
    folder = pngs(tmp_path / "f", ["ok.png", "tab\there.png", " space.png", "new\nline.png"])
    messages = []
    with client_for(folder, messages=messages) as c:
        assert [i["file"] for i in c.get("/api/label/next?count=9").json()["items"]] == ["ok.png"]
        assert c.get("/api/label/stats").json()["total"] == 1
    assert any("left out 3 image(s)" in m and "rename them" in m for m in messages), messages


# --- the model's suggestions ---------------------------------------------------------------------------------

def test_images_the_teacher_reads_as_surely_come_in_a_fixed_shuffle_not_by_name(tmp_path, monkeypatch):
    """ddddocr's pair reads every image its two models read differently at confidence 0 (most of a folder it reads
    badly): those come in a fixed shuffle, the same at every start, not in name order (names group a folder by
    source or day); a surer reading still comes after them."""
    from core import teach
    from core.teacher import Reading

    names = [f"{i:02d}.png" for i in range(20)]
    folder = pngs(tmp_path / "f", names)

    class Stub:
        def read(self, items, charset=None, progress=None, margin=None):
            return [Reading("12", 0.9 if p.endswith("00.png") else 0.0, (0.9, 0.9)) for p in items]

    monkeypatch.setattr(teach, "load_teacher", lambda name, threads=1: Stub())
    monkeypatch.setattr(config, "TEACHER", "ddddocr")
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "cache"))
    order = list(labelling.LabelQueue(folder, say=lambda m: None).order)
    assert order[-1] == "00.png" and order[:-1] != names[1:] and sorted(order[:-1]) == names[1:]
    assert list(labelling.LabelQueue(folder, say=lambda m: None).order) == order


def test_an_image_the_pairs_two_models_read_differently_says_so(tmp_path, monkeypatch):
    """ddddocr's pair gives an image its two models read differently confidence 0: the page's item says they
    disagree (not "0 % sure"); a reading of ddddocr's default model alone at 0 does not."""
    from core import teach
    from core.teacher import Reading

    folder = pngs(tmp_path / "f", ["a.png", "b.png"])

    class Stub:
        def read(self, items, charset=None, progress=None, margin=None):
            return [Reading("12", 0.0 if p.endswith("a.png") else 0.9, (0.9, 0.5)) for p in items]

    monkeypatch.setattr(teach, "load_teacher", lambda name, threads=1: Stub())
    pair = teach.PageReader("ddddocr2", folder).read(["a.png", "b.png"])
    assert pair["a.png"]["disagree"] is True and "disagree" not in pair["b.png"]
    assert "disagree" not in teach.PageReader("ddddocr", folder).read(["a.png"])["a.png"]
    monkeypatch.setattr(config, "TEACHER", "ddddocr2")
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "cache"))
    with client_for(folder) as c:
        items = {i["file"]: i for i in c.get("/api/label/next?count=2").json()["items"]}
    assert items["a.png"]["disagree"] is True and items["a.png"]["text"] == "12" and "disagree" not in items["b.png"]


def test_a_large_folder_opens_after_the_teachers_first_part_and_the_rest_joins_as_it_is_read(tmp_path, monkeypatch):
    """Before any model, a folder of more unread images than TEACHER_FIRST: the teacher reads that many, drawn
    across the folder, and the page opens offering them least confident first; it reads the others while the page
    is open, a part at a time: until then they come after, in file-name order, marked as not read yet; once read
    they are offered least confident first among themselves, a skipped image still last, an answered one gone;
    and a later start finds every reading kept."""
    from core import teach
    from core.teacher import Reading

    folder = pngs(tmp_path / "f", [f"{i:02d}.png" for i in range(12)])
    confidence = lambda path: 0.3 + 0.05 * ((int(os.path.basename(path)[:2]) * 7) % 12)  # noqa: E731
    gate, reads = threading.Event(), []

    class Stub:  # reads the names: each image's confidence from its number; the later parts wait for the gate
        def read(self, items, charset=None, progress=None, margin=None):
            items = list(items)
            if len(reads) > len(teach.MARGINS):  # the sample at each border, then the first part, then the rest
                assert gate.wait(60)
            reads.append([os.path.basename(p) for p in items])
            return [Reading("12", confidence(p), (0.9, 0.9)) for p in items]

    monkeypatch.setattr(teach, "load_teacher", lambda name, threads=1: Stub())
    monkeypatch.setattr(config, "TEACHER", "ddddocr")
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(labelling, "TEACHER_FIRST", 5)
    monkeypatch.setattr(labelling, "TEACHER_CHUNK", 4)
    said = []
    queue = labelling.LabelQueue(folder, say=said.append)
    first = reads[len(teach.MARGINS)]
    assert len(first) == 5 and "reads 5 of the 12 images, drawn across the folder, before the page opens" in said[0]
    later = sorted(set(os.listdir(folder)) - set(first))
    offered = [i["file"] for i in queue.next(12)]
    assert offered == sorted(first, key=lambda n: confidence(n)) + later  # the rest after, in file-name order
    assert not any(i.get("pending") for i in queue.next(5)) and all(i["pending"] for i in queue.next(12)[5:])
    assert queue.stats()["teacher_reading"] == 7
    queue.skip(later[-1])
    queue.answer(later[0], "12")
    gate.set()
    queue.wait()
    assert reads[len(teach.MARGINS) + 1:] == [later[:4], later[4:]]  # a part at a time
    rest = [n for n in later[1:-1]]
    assert [i["file"] for i in queue.next(12)] == (sorted(first, key=lambda n: confidence(n))
                                                   + sorted(rest, key=confidence) + [later[-1]])
    assert queue.stats()["teacher_reading"] == 0 and not any(i.get("pending") for i in queue.next(12))
    assert "read the other 7 images" in said[-1], said
    reads.clear()
    again = labelling.LabelQueue(folder, say=said.append)  # a later start: every reading kept, none read again
    assert reads == [] and again.reading is None and "types its readings in" in said[-2], said[-2:]


def test_least_confident_first_with_the_models_reading(tmp_path, checkpoint):
    paths = captchas(tmp_path / "f", 12, seed=31)
    folder = os.path.dirname(paths[0])
    names = [os.path.basename(p) for p in paths]
    with open(os.path.join(folder, "broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\nnot really")
    predictor = Predictor(checkpoint)
    texts, confidences, chars = predictor.predict_arrays(np.stack([predictor.load(p) for p in paths]))
    expected = {n: (t, c, p) for n, t, c, p in zip(names, texts, confidences, chars)}
    messages = []
    with client_for(folder, Predictor(checkpoint), messages) as c:
        items = c.get("/api/label/next?count=50").json()["items"]
        assert items[0]["file"] == "broken.png" and items[0]["confidence"] is None and items[0]["error"]
        items = items[1:]
        assert sorted(i["file"] for i in items) == sorted(names)
        shown = [i["confidence"] for i in items]
        assert shown == sorted(shown) and len(set(shown)) > 3, shown  # ascending, and not all alike
        assert [i["file"] for i in items] == sorted(names, key=lambda n: expected[n][1])
        for item in items:
            text, confidence, probs = expected[item["file"]]
            assert item["text"] == text and len(text) == 4
            assert item["confidence"] == pytest.approx(confidence, rel=1e-3)
            assert [ch["char"] for ch in item["chars"]] == list(text)
            assert [ch["confidence"] for ch in item["chars"]] == pytest.approx(probs, abs=1e-3)
        assert c.get("/api/label/stats").json()["model"] == {"name": "cnn", "checkpoint": "label_best.pt"}
        # answering the least confident offers the next one; the reader's endpoints work beside
        assert answer(c, items[0]["file"], "0000").status_code == 200
        assert c.get("/api/label/next?count=1").json()["items"][0]["file"] == "broken.png"
        assert c.post("/api/label/skip", json={"file": "broken.png"}).status_code == 200
        assert c.get("/api/label/next?count=1").json()["items"][0]["file"] == items[1]["file"]
        raw = open(paths[0], "rb").read()
        assert c.post("/api/predict", content=raw, headers={"content-type": "image/png"}).json()["text"] == \
            expected[names[0]][0]
    assert any(m.startswith("labelling: scored 13 images in ") and "least confident first" in m for m in messages)


def test_without_a_model_the_page_works_and_the_reader_says_why(tmp_path):
    folder = pngs(tmp_path / "f", ["b.png", "a.png"])
    with client_for(folder) as c:
        assert c.get("/api/label/next?count=5").json() == {"items": [
            {"file": "a.png", "text": "", "confidence": None, "chars": []},
            {"file": "b.png", "text": "", "confidence": None, "chars": []}], "remaining": 2}
        assert c.get("/api/label/stats").json()["model"] is None
        assert c.get("/healthz").json() == {"status": "ok", "model": None}
        for r in (c.post("/api/predict", content=b"x", headers={"content-type": "image/png"}),
                  c.post("/api/predict/batch", json={"images": ["eA=="]}), c.get("/api/model")):
            check_error(r, 503, "no model is loaded", "--label_dir=FOLDER weights/")
        assert c.get("/", follow_redirects=False).headers["location"] == "/label"
        assert answer(c, "b.png", "xy").status_code == 200
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "b.png\txy\n"


def test_the_page_is_served_and_needs_nothing_from_outside(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png"])
    with client_for(folder) as c:
        page = c.get("/label")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for asset in ("/static/label.js", "/static/label.css", "/static/style.css"):
            assert c.get(asset).status_code == 200 and asset in page.text
        for key in ("Enter", "Ctrl", "Esc"):
            assert f"<kbd>{key}</kbd>" in page.text
    for name in ("label.html", "label.js", "label.css"):
        text = open(os.path.join(ROOT, "web", name)).read()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
    assert "pixelated" in open(os.path.join(ROOT, "web", "label.css")).read()


# --- starting it -------------------------------------------------------------------------------------------

def test_which_model_labels(tmp_path, monkeypatch):
    """The named model; else the newest *_best.pt; never the shipped default.pt unless named."""
    monkeypatch.setattr(config, "WEIGHTS_DIR", str(tmp_path))
    untrained_checkpoint(tmp_path / "default.pt")
    path, why = labelling.choose_model(None)
    assert path is None and "default.pt reads generated captchas" in why and "no suggestions" in why
    untrained_checkpoint(tmp_path / "mine_best.pt")
    path, why = labelling.choose_model(None)
    assert path == str(tmp_path / "mine_best.pt") and "newest trained model" in why
    assert labelling.choose_model(str(tmp_path / "default.pt"))[0] == str(tmp_path / "default.pt")
    monkeypatch.setattr(sys, "argv", ["app.py", f"--label_dir={tmp_path / 'none'}"])
    with pytest.raises(config.ConfigError, match="--label_dir=.*: no such folder"):
        webapp.main()


@pytest.mark.slow
def test_a_real_server_without_a_model_serves_the_labelling_page(tmp_path):
    folder = pngs(tmp_path / "f", ["a.png", "b.png"])
    weights = tmp_path / "weights"
    weights.mkdir()
    untrained_checkpoint(weights / "default.pt")  # not used: it reads generated captchas
    log = tmp_path / "server.log"
    # serve() puts its first argument first: here an option, so that no model is named
    with serve(f"--label_dir={folder}", log, f"--weights_dir={weights}", "--teacher=") as (url, _):
        with urllib.request.urlopen(url + "/api/label/next?count=5") as r:
            assert [i["file"] for i in json.loads(r.read())["items"]] == ["a.png", "b.png"]
        with urllib.request.urlopen(url + "/label") as r:
            token = page_token(r.read().decode())
        request = urllib.request.Request(url + "/api/label/answer", json.dumps({"file": "a.png", "label": "Q"}).encode(),
                                         {"Content-Type": "application/json", "X-Label-Token": token})
        with urllib.request.urlopen(request) as r:
            assert json.loads(r.read())["stats"]["remaining"] == 1
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/api/model")
        assert e.value.code == 503 and "no model is loaded" in json.loads(e.value.read())["error"]
    out = read(log)
    assert "labelling model: none (no " in out and "default.pt reads generated captchas" in out
    assert f"labelling {folder}: 2 images, 0 answered, 2 to go, at {url}/label" in out
    assert read(os.path.join(folder, "labels.tsv")) == HEADER + "a.png\tQ\n"
