"""benchmarks/mix_sets.py: a folder mixing several suite sets' styles, named by source, labels in lower case."""
import os

from conftest import run_script
from test_owndata import own_set


def test_a_mix_of_two_sets_and_its_refusals(tmp_path):
    sets = tmp_path / "sets"
    own_set(str(sets / "alpha" / "train"), 12, 1, labels_tsv=True, charset="abXY12")
    own_set(str(sets / "beta" / "train"), 12, 2, labels_tsv=False, charset="cdZ3")
    out = tmp_path / "mix"
    p = run_script("benchmarks/mix_sets.py", f"--real_sets={sets}", "--sets=alpha,beta", "--per_set=10", "--test=3",
                   f"--out={out}")
    assert f"{out}/train: 14 images" in p.stdout and f"{out}/test: 6 images" in p.stdout
    for part, each in (("train", 7), ("test", 3)):
        rows = [line.split("\t") for line in (out / part / "labels.tsv").read_text().splitlines()]
        names = [n for n, _ in rows]
        assert sorted(os.listdir(out / part)) == sorted(names + ["labels.tsv"])
        assert sum(n.startswith("a") for n in names) == sum(n.startswith("b") for n in names) == each
        assert all(t == t.lower() and len(t) == 4 for _, t in rows)
    assert set(os.listdir(out / "train")) & set(os.listdir(out / "test")) == {"labels.tsv"}  # no image in both
    for args, message in ((["--sets=alpha,gamma"], "gamma: not in the suite"),
                          (["--sets=alpha,alpha"], "each set must start with a letter of its own"),
                          (["--sets=alpha", "--per_set=50"], "alpha has 12 training images, fewer than --per_set=50"),
                          (["--sets=alpha"], "exists; remove it or name another --out")):
        target = out if "exists" in message else tmp_path / "other"
        r = run_script("benchmarks/mix_sets.py", f"--real_sets={sets}", *args, f"--out={target}", check=False)
        assert r.returncode == 1 and message in r.stdout and "Traceback" not in r.stdout, r.stdout
