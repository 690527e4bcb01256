"""benchmarks/audit_reads.py: a reader's score on each verdict of a person's audit of a set."""
import os
import re

from PIL import Image

from core.generate import generate
from conftest import ROOT, run_script
from benchmarks import audit_reads

CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SHIPPED = os.path.join(ROOT, "weights", "default.pt")  # reads generated 4-character captchas of CHARSET


def test_the_shipped_colour_lines_audit_reads_as_documented():
    rows = audit_reads.read_audit(os.path.join(ROOT, "docs", "colour_lines_audit.tsv"))
    verdicts = [verdict for _, _, verdict in rows]
    assert len(rows) == 60 and len({name for name, _, _ in rows}) == 60
    assert (verdicts.count("readable"), verdicts.count("a guess"), verdicts.count("unreadable")) == (26, 32, 2)
    assert all(re.fullmatch(r"test/\d{5}\.png", name) and re.fullmatch(r"[0-9A-Z]{4,8}", label)
               for name, label, _ in rows)


def test_a_checkpoint_is_scored_per_verdict_and_reads_a_packed_copy(tmp_path):
    generate(str(tmp_path / "set"), 6, 5, CHARSET, 4, 160, 60, processes=1, quiet=True)
    names = sorted(os.listdir(tmp_path / "set"))
    packed = tmp_path / "packed"
    packed.mkdir()
    for name in names:  # a packed copy: the same pixels as lossless WebP under the same stem
        Image.open(tmp_path / "set" / name).save(packed / (os.path.splitext(name)[0] + ".webp"), lossless=True)
    verdicts = ["readable"] * 4 + ["a guess", "unreadable"]
    audit = tmp_path / "audit.tsv"
    audit.write_text("file\tlabel\tverdict\twhy\n" + "".join(
        f"{name}\t{name.split('_')[0]}\t{verdict}\t\n" for name, verdict in zip(names, verdicts)))
    outs = [run_script("benchmarks/audit_reads.py", f"--audit={audit}", f"--set={folder}",
                       f"--reader={SHIPPED}", "--show=1").stdout for folder in (tmp_path / "set", packed)]
    for out in outs:
        counts = {k: (int(r), int(n)) for k, r, n in re.findall(r"^([a-z ]+): (\d+)/(\d+)\b", out, re.M)}
        assert set(counts) == {"readable", "a guess", "unreadable", "all"}, out
        assert [n for _, n in counts.values()] == [4, 1, 1, 6], out
        assert counts["all"][0] == sum(counts[k][0] for k in ("readable", "a guess", "unreadable"))
        assert counts["readable"][0] >= 3, out  # the shipped model reads generated captchas (99 % of them)
    assert outs[0] == outs[1].replace(".webp", ".png").replace(str(packed), str(tmp_path / "set"))


def test_a_bad_audit_line_and_a_missing_image_are_named(tmp_path):
    audit = tmp_path / "audit.tsv"
    audit.write_text("file\tlabel\tverdict\twhy\nonly-a-name.png\n")
    p = run_script("benchmarks/audit_reads.py", f"--audit={audit}", f"--set={tmp_path}", check=False)
    assert p.returncode != 0 and f"{audit}:2: expected file<TAB>label<TAB>verdict" in p.stdout
    audit.write_text("file\tlabel\tverdict\twhy\ngone.png\tAB12\treadable\t\n")
    p = run_script("benchmarks/audit_reads.py", f"--audit={audit}", f"--set={tmp_path}",
                   f"--reader={SHIPPED}", check=False)
    assert p.returncode != 0 and "gone.png: not found" in p.stdout and "Traceback" not in p.stdout
    p = run_script("benchmarks/audit_reads.py", f"--audit={audit}", f"--set={tmp_path}",
                   f"--reader={tmp_path}/none.pt", check=False)
    assert p.returncode != 0 and "none.pt" in p.stdout and "Traceback" not in p.stdout
