"""The model zoo: every registered model x head, each trick on resnet18, CTC loss and decoding, the center
loss, local weight files, options from config.py, and a CTC learning run on variable-length captchas."""
import importlib
import math
import re

import pytest
import torch
import torch.nn.functional as F
import torchvision

from core.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from core.files import read_results
from core.generate import generate
from core.inference import Predictor
import config
from core import data
import models
from conftest import DIGITS, run_script, tmp_paths
from models import adapt, tricks
from models.decoding import ctc_candidates, ctc_decode, fixed_decode, greedy_path, length_paths
from models.losses import LEVELS, CenterLoss, ctc_loss, ctc_targets, fixed_loss, with_candidates

H, W = 32, 96  # small images keep 31 models fast; 96 / 8 = 12 CTC columns, enough for 4 characters
TEXTS = ["301", "4556", "7007", "129"]  # variable length (3-4), genuine doubles
CTC_MIN_SEQ_ACC = 0.5  # 3-5 random digits: chance is below 1e-3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two threads fight the other processes on a shared 2-core box; one thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(name, **options):
    codec = data.Codec(DIGITS, (3, 4))
    classes = models.head(name).num_classes(codec)
    build_args = dict(name=name, in_channels=1, num_classes=classes, positions=codec.max_len, height=H, width=W,
                      **options)
    return models.build_model(**build_args), build_args, codec


def check_model(name, tmp_path, **options):
    """Shape, finite values, a backward pass, decoding, and save -> load -> identical output; returns the
    model rebuilt from its checkpoint."""
    torch.manual_seed(0)
    model, build_args, codec = build(name, **options)
    head = models.head(name)
    x = torch.rand(2, 1, H, W) * 2 - 1
    logits = model(x)
    b, t, k = logits.shape
    assert (b, k) == (2, build_args["num_classes"]) and torch.isfinite(logits).all()
    assert t == codec.max_len if head.kind == "fixed" else t >= 2 * codec.max_len - 1  # room for blanks between doubles
    labels = torch.tensor([codec.encode(s) for s in TEXTS[:2]])
    lengths = torch.tensor([len(s) for s in TEXTS[:2]])
    head.loss(logits, labels, lengths).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), n
    texts, confs, chars = head.decode(logits, codec)
    assert len(texts) == 2 and all(0 <= c <= 1 for c in confs) and [len(c) for c in chars] == [len(s) for s in texts]

    model.eval()
    with torch.no_grad():
        expected = model(x)
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, model, build_args, codec)
    rebuilt, _ = model_from_checkpoint(load_checkpoint(path))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), expected)
    return rebuilt


HEAVY = ("resnet50", "resnet101", "resnet152", "resnext50_32x4d")  # 23-58 M parameters: seconds each on a CPU


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.removesuffix("_ctc") in HEAVY else n
                                  for n in models.MODELS])
def test_every_model(name, tmp_path):
    model = check_model(name, tmp_path)
    _, h, w = adapt.output_shape(model.features, 1, 60, 160)  # the documented 60x160 feature map
    assert h <= 4 and w >= (9 if models.head_of(name) == "fixed" else 18)


# Each trick once on resnet18 (backbone tricks are the same module under either head), and all together.
CASES = [("resnet18", o) for o in (dict(ibn=True), dict(attention="se"), dict(attention="cbam"), dict(pool="dual"),
                                   dict(neck=32), dict(neck=32, bnneck=True), dict(dropout=0.5),
                                   dict(ibn=True, attention="cbam", pool="dual", neck=32, bnneck=True))]
CASES += [("resnet18_ctc", o) for o in (dict(pool="avg"), dict(bnneck=True), dict(sequence="gru", hidden=32),
                                        dict(sequence="none"), dict(ibn=True, attention="se", pool="max", bnneck=True))]


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{o}" for n, o in CASES])
def test_each_trick_on_resnet18(name, options, tmp_path):
    rebuilt = check_model(name, tmp_path, **options)
    kinds = {type(m) for m in rebuilt.modules()}
    assert (tricks.IBNNorm in kinds) == options.get("ibn", False)
    assert (tricks.SEAttention in kinds) == (options.get("attention") == "se")
    assert (tricks.CBAMAttention in kinds) == (options.get("attention") == "cbam")
    assert rebuilt.head.pool.mode == options.get("pool", "flat") and rebuilt.head.drop.p == options.get("dropout", 0.2)
    assert isinstance(rebuilt.head.neck, torch.nn.Identity) != options.get("bnneck", False)
    if name == "resnet18_ctc":
        rnn = getattr(rebuilt.head.sequence, "rnn", None)
        kind = options.get("sequence", models.neutral(name, "sequence"))
        assert (rnn is None) if kind == "none" else isinstance(rnn, {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind])


def test_pooling_keeps_columns():
    x = torch.arange(2 * 3 * 4 * 5.0).view(2, 3, 4, 5)  # (B, C, h, w)
    pool = lambda mode: models.heads.ColumnPool(mode)(x)  # noqa: E731
    assert pool("flat").shape == (2, 12, 5) and torch.equal(pool("flat").flatten(1), x.flatten(1))
    assert torch.equal(pool("avg"), x.mean(2)) and torch.equal(pool("max"), x[:, :, -1])
    assert torch.equal(pool("dual"), torch.cat([x.mean(2), x[:, :, -1]], 1))


# --- CTC -----------------------------------------------------------------------------------------------------

def path_logits(paths, k=11):
    """Logits (B, T, k) whose greedy path is each string: '-' = blank, a digit d = class d + 1."""
    logits = torch.full((len(paths), len(paths[0]), k), -5.0)
    for b, path in enumerate(paths):
        for t, c in enumerate(path):
            logits[b, t, 0 if c == "-" else int(c) + 1] = 5.0
    return logits


def test_ctc_decode_keeps_genuine_doubles():
    codec = data.Codec(DIGITS, (0, 6))
    texts, confs, chars = ctc_decode(path_logits(["11-122-2", "1112222-", "--------", "-3-4-5-6", "7-7-7-77"]), codec)
    assert texts == ["1122", "12", "", "3456", "7777"]
    assert [len(c) for c in chars] == [4, 2, 0, 4, 4] and all(0 < c <= 1 for c in confs)


def test_length_paths_is_the_likeliest_path_of_an_allowed_length():
    """Against every path of small random problems: the Viterbi path reads lo..hi characters and no path that
    does is likelier; None where the frames cannot hold lo characters."""
    import itertools
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        steps, classes = int(torch.randint(2, 6, (1,), generator=g)), int(torch.randint(2, 5, (1,), generator=g))
        lo = int(torch.randint(0, 4, (1,), generator=g))
        hi = lo + int(torch.randint(0, 2, (1,), generator=g))
        lp = torch.randn(steps, classes, generator=g, dtype=torch.float64).log_softmax(-1)
        score = lambda path: sum(float(lp[t, c]) for t, c in enumerate(path))  # noqa: E731
        allowed = [p for p in itertools.product(range(classes), repeat=steps) if lo <= len(greedy_path(p)) <= hi]
        got = length_paths(lp[None], lo, hi)[0]
        if not allowed:
            assert got is None
            continue
        assert lo <= len(greedy_path(got)) <= hi
        assert abs(score(got) - max(map(score, allowed))) < 1e-9


def test_ctc_decode_reads_the_labels_length():
    """A greedy path one character too long or short is replaced by the likeliest path of the codec's length;
    a path of an allowed length is read as it is, and the candidates follow the path read."""
    codec = data.Codec(DIGITS, 4)
    logits = path_logits(["1-2-3-4-", "1-2-3-45", "1-2-3---", "12--3-4-"])
    logits[1, 7, 0] = 4.0  # the extra 5 is barely likelier than a blank
    logits[2, 6, 9] = 4.0  # a 8 is nearly as likely as the blanks after the 3
    texts, confs, chars = ctc_decode(logits, codec)
    assert texts == ["1234", "1234", "1238", "1234"]
    assert [len(c) for c in chars] == [4, 4, 4, 4] and all(0 < c <= 1 for c in confs)
    assert [len(c) for c in ctc_candidates(logits, codec, 3)] == [4, 4, 4, 4]
    assert ctc_candidates(logits, codec, 3)[2][3][0][0] == "8"
    # a range of lengths: only readings outside it change
    texts, _, _ = ctc_decode(logits, data.Codec(DIGITS, (3, 5)))
    assert texts == ["1234", "12345", "123", "1234"]


def test_temperature_changes_confidences_not_readings():
    """Decoding at a temperature reads the same texts (kept-length paths included) and candidates in the same
    order; T < 1 raises the confidences of greedy readings, T > 1 lowers them (a reading kept to the length may
    hold a character that is not its frame's likeliest, which sharper scores make less likely); T = 1 is the plain
    softmax."""
    codec = data.Codec(DIGITS, 4)
    logits = path_logits(["1-2-3-4-", "1-2-3-45", "1-2-3---", "12--3-4-"])
    logits[1, 7, 0] = 4.0
    logits[2, 6, 9] = 4.0
    plain = ctc_decode(logits, codec)
    assert ctc_decode(logits, codec, 1.0) == plain
    sharp, soft = ctc_decode(logits, codec, 0.5), ctc_decode(logits, codec, 2.0)
    assert sharp[0] == soft[0] == plain[0]
    assert all(sharp[1][i] > plain[1][i] > soft[1][i] for i in (0, 3))  # rows 1 and 2 are kept to 4 characters
    order = lambda rows: [[[c for c, _ in char] for char in row] for row in rows]
    assert order(ctc_candidates(logits, codec, 3, 0.5)) == order(ctc_candidates(logits, codec, 3))
    fixed = torch.randn(3, 4, 11)
    assert fixed_decode(fixed, codec, 0.5)[0] == fixed_decode(fixed, codec)[0]
    assert all(s > p for s, p in zip(fixed_decode(fixed, codec, 0.5)[1], fixed_decode(fixed, codec)[1]))


def test_evaluate_fits_the_temperature():
    """Labels drawn from softmax(z) make z calibrated: the fitted temperature is ~1; the same scores doubled are
    over-confident by 2, and the fit says so."""
    from core.engine import evaluate

    class Scores(torch.nn.Module):  # a "model" that returns given scores, whatever the images
        def __init__(self, z):
            super().__init__()
            self.z = z

        def forward(self, x):
            return self.z

    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 1, 4, generator=g) * 2
    labels = torch.multinomial(z[:, 0].softmax(-1), 1, generator=g)
    images = torch.zeros(4000, 1, 2, 2, dtype=torch.uint8)
    codec, device = data.Codec("abcd", 1), torch.device("cpu")
    fits = [evaluate(Scores(s), (images, labels, torch.ones(4000, dtype=torch.long)), codec, fixed_decode,
                     device, 4000, fixed_loss)[2] for s in (z, 2 * z)]
    assert 0.84 <= fits[0] <= 1.19 and 1.68 <= fits[1] <= 2.38, fits
    assert evaluate(Scores(z), (images, labels, torch.ones(4000, dtype=torch.long)), codec, fixed_decode,
                    device, 4000)[2] == 1.0  # no loss: no fit


def test_ctc_loss_reads_padded_labels():
    codec = data.Codec(DIGITS, (2, 4))
    labels = torch.tensor([codec.encode("1122"), codec.encode("35")])
    lengths = torch.tensor([4, 2])
    assert ctc_targets(labels, lengths).tolist() == [2, 2, 3, 3, 4, 6]
    good = path_logits(["11-122-2", "-33--55-"])
    bad = path_logits(["1-2-----", "--------"])
    assert ctc_loss(good, labels, lengths) < 0.1 < ctc_loss(bad, labels, lengths)
    smooth = ctc_loss(good, labels, lengths, label_smoothing=0.1)
    assert smooth > ctc_loss(good, labels, lengths)  # over-confident frames are penalised


def test_a_position_with_candidates_costs_minus_log_of_their_weighted_summed_probability():
    """A teacher's 'o' that the labels show is often a 'q' or a '0': the row's loss is -log of the weighted sum of
    the probabilities of the texts its candidates spell (per target character, as ctc_loss averages), and a row
    without candidates costs what it did; the fixed head likewise per position."""
    torch.manual_seed(0)
    stored = lambda weight: round(weight * LEVELS) / LEVELS  # a weight is kept in steps of 1 / LEVELS
    codec = data.Codec(DIGITS, (2, 4))
    logits = torch.randn(3, 12, codec.ctc_classes, requires_grad=True)
    texts = ["1122", "35", "906"]
    plain = torch.tensor([codec.encode(t) for t in texts])
    lengths = torch.tensor([len(t) for t in texts])
    labels = plain.clone()
    others = ((codec.index["7"], 1.0), (codec.index["8"], 0.5))
    labels[2] = torch.tensor(with_candidates(codec.encode("906"), [(), others, ()]))
    log_probs = logits.log_softmax(-1)

    def nll(row, text):
        target = torch.tensor([codec.index[c] + 1 for c in text])
        return F.ctc_loss(log_probs[row:row + 1].transpose(0, 1), target, torch.tensor([12]),
                          torch.tensor([len(text)]), reduction="sum")

    either = -torch.logsumexp(torch.stack([-nll(2, "906"), -nll(2, "976"), math.log(stored(0.5)) - nll(2, "986")]), 0)
    expected = (nll(0, "1122") / 4 + nll(1, "35") / 2 + either / 3) / 3
    loss = ctc_loss(logits, labels, lengths, candidates=True)
    assert torch.allclose(loss, expected, atol=1e-5)
    assert loss < ctc_loss(logits, plain, lengths)  # more texts accepted: a smaller loss
    assert torch.allclose(ctc_loss(logits[:2], labels[:2], lengths[:2]), ctc_loss(logits[:2], plain[:2], lengths[:2]))
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # a text that cannot fit the columns (11 repeated characters need 21) is impossible: only the other one counts
    long = data.Codec(DIGITS, 11)
    row = torch.tensor([with_candidates(long.encode("1" * 11), [((2, 1.0),)] + [()] * 10)])
    alone = torch.tensor([long.encode("2" + "1" * 10)])
    few = torch.randn(1, 20, long.ctc_classes)
    n = torch.tensor([11])
    assert torch.allclose(ctc_loss(few, row, n, candidates=True), ctc_loss(few, alone, n))

    fixed = torch.randn(2, 4, len(DIGITS) + 1)
    rows = torch.tensor([codec.encode("1234"), with_candidates(codec.encode("56"), [((7, 0.25),), ()])])
    lp = fixed.log_softmax(-1)
    either = torch.logaddexp(lp[1, 0, 5], lp[1, 0, 7] + math.log(stored(0.25)))
    expected = -(lp[0, [0, 1, 2, 3], [1, 2, 3, 4]].sum() + either + lp[1, 1, 6] + lp[1, 2:, codec.pad].sum()) / 8
    assert torch.allclose(fixed_loss(fixed, rows, None, candidates=True), expected, atol=1e-5)
    # label smoothing as F.cross_entropy mixes it in: the cross-entropy to the uniform distribution
    assert torch.allclose(fixed_loss(fixed, rows, None, 0.1, candidates=True), 0.9 * expected - 0.1 * lp.mean(),
                          atol=1e-5)


def test_label_smoothing_fixed_head():
    logits = torch.zeros(1, 2, 10)
    logits[0, 0, 3] = logits[0, 1, 4] = 20.0
    labels = torch.tensor([[3, 4]])
    assert fixed_loss(logits, labels, None) < 1e-6 < fixed_loss(logits, labels, None, label_smoothing=0.1)


def test_center_loss_fixed_head_pulls_characters_to_their_centres():
    torch.manual_seed(0)
    model, build_args, codec = build("cnn", neck=16, bnneck=True)
    keys = set(model.state_dict())
    criterion = CenterLoss(model, build_args["num_classes"], fixed_loss, weight=0.1, alpha=0.5)
    assert set(model.state_dict()) == keys  # the centres are no part of the model or its checkpoints
    x = torch.rand(4, 1, H, W) * 2 - 1
    labels = torch.tensor([codec.encode(s) for s in TEXTS])
    lengths = torch.tensor([len(s) for s in TEXTS])
    model.eval()  # same features at every call
    model.head.neck.train()  # the hook reads features only in training
    logits = model(x)
    first = criterion(logits, labels, lengths) - fixed_loss(logits, labels, lengths)
    seen = set(labels.flatten().tolist())
    assert first > 0 and all((criterion.centers[c] != 0).any() == (c in seen) for c in range(len(criterion.centers)))
    for _ in range(3):
        logits = model(x)
        later = criterion(logits, labels, lengths) - fixed_loss(logits, labels, lengths)
    assert later < first / 2  # the centres moved toward the features


def test_center_loss_ctc_labels_columns_of_correct_readings():
    model, build_args, codec = build("cnn_ctc", sequence="none")
    criterion = CenterLoss(model, build_args["num_classes"], ctc_loss, weight=0.1)
    labels = torch.tensor([codec.encode("112"), codec.encode("345")])
    classes = criterion.classes(path_logits(["11-12--", "3-4-4-5"]), labels, torch.tensor([3, 3]))
    assert classes.tolist() == [[2, 2, -1, 2, 3, -1, -1], [-1] * 7]  # the second sample reads 3445: not used


def test_center_loss_needs_per_character_features():
    model, build_args, _ = build("cnn")
    with pytest.raises(ValueError, match="NECK"):
        CenterLoss(model, build_args["num_classes"], fixed_loss, 0.1)


# --- options, run names, weight files --------------------------------------------------------------------

def test_model_options_from_config_names():
    opts = models.model_options("resnet18_ctc", {"IBN": True, "SEQUENCE": "gru", "NECK": 0})
    assert opts == dict(ibn=True, attention="", pool="flat", bnneck=False, dropout=0.2, sequence="gru", hidden=256)
    assert set(models.model_options("cnn", config.as_dict())) == {"pool", "neck", "bnneck", "dropout", "widen"}
    with pytest.raises(ValueError, match=r"IBN=True does not apply to densenet121; models that take it: resnet18,"):
        models.model_options("densenet121", {"IBN": True})
    with pytest.raises(ValueError, match="SEQUENCE='gru' does not apply to resnet18;"):
        models.model_options("resnet18", {"SEQUENCE": "gru"})
    with pytest.raises(ValueError, match="does not take ibn"):
        models.build_model("crnn", 1, 11, 4, H, W, ibn=True)
    with pytest.raises(ValueError, match="attention 'eca'"):
        models.build_model("resnet18", 1, 11, 4, H, W, attention="eca")


def test_widen_multiplies_the_custom_cnns_channels():
    """WIDEN: every stage of cnn / cnn_ctc that many times as wide (the shipped default.pt is WIDEN=2); a
    checkpoint's build_args rebuild it, and a model without the option refuses the setting."""
    plain, wide = (models.build_model("cnn_ctc", 1, 37, 4, H, W, widen=w) for w in (1.0, 2.0))
    convs = lambda m: [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert convs(wide) == [2 * c for c in convs(plain)] == [64, 128, 256, 256]
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 3.5 < count(wide) / count(plain) < 4.5
    assert wide(torch.zeros(2, 1, H, W)).shape == plain(torch.zeros(2, 1, H, W)).shape
    assert models.model_options("cnn_ctc", {"WIDEN": 2.0})["widen"] == 2.0
    assert models.registry.describe("cnn_ctc", {"widen": 2.0}) == "cnn_ctc-widen2"
    with pytest.raises(ValueError, match="WIDEN=2.0 does not apply to resnet18; models that take it: cnn, cnn_ctc"):
        models.model_options("resnet18", {"WIDEN": 2.0})


def test_run_name_says_what_was_trained():
    try:
        assert config.run_name() == config.MODEL
        config.parse(["--model=resnet18_ctc", "--ibn=1", "--attention=cbam", "--pool=dual", "--bnneck=1",
                      "--sequence=gru", "--center_loss=0.01", "--label_smoothing=0.1"])
        assert config.run_name() == "resnet18_ctc-ibn-cbam-dual-bnneck-gru-center0.01-ls0.1"
        config.parse(["--run=mine"])
        assert config.run_name() == "mine"
    finally:
        importlib.reload(config)


def test_local_torchvision_weights(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    model, _, _ = build("resnet18")
    report = models.load_pretrained(model, str(tmp_path / "r18.pth"))
    assert torch.equal(model.features.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)
    assert torch.equal(model.features.bn1.running_var, tv.bn1.running_var)
    assert re.search(r"loaded \d+ of \d+ tensors", report) and "conv1.weight (64, 3, 7, 7)" in report
    assert "fc.weight" in report  # the ImageNet classifier is named as skipped

    small = torchvision.models.mobilenet_v3_small()
    torch.save(small.state_dict(), tmp_path / "mv3.pth")
    model, _, _ = build("mobilenet_v3_small_ctc")
    report = models.load_pretrained(model, str(tmp_path / "mv3.pth"))
    stem = small.features[0][0].weight
    assert torch.allclose(model.features.features[0][0].weight, stem.sum(1, keepdim=True))
    assert "summed over RGB" in report

    cnn, _, _ = build("cnn")
    with pytest.raises(ValueError, match="none of its"):
        models.load_pretrained(cnn, str(tmp_path / "r18.pth"))
    # torchvision's DenseNet files use old key names, renamed as torchvision's own loader does
    legacy = "features.denseblock1.denselayer1.norm.1.weight"
    assert adapt.LEGACY_DENSENET.sub(r"\1\2", legacy) == "features.denseblock1.denselayer1.norm1.weight"


# --- train.py with the CTC head ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def variable_digits(tmp_path_factory):
    """3-5 digit captchas at 128x48: 2000 train (seed 1), 200 test (seed 2)."""
    base = tmp_path_factory.mktemp("ctc")
    generate(str(base / "train"), 2000, 1, DIGITS, (3, 5), 128, 48, quiet=True)
    generate(str(base / "test"), 200, 2, DIGITS, (3, 5), 128, 48, quiet=True)
    return base


@pytest.mark.slow
def test_ctc_head_learns_variable_length(variable_digits):
    base = variable_digits
    size = [f"--charset={DIGITS}", "--length=(3,5)", "--image_width=128", "--image_height=48", "--threads=1"]
    out = run_script("train.py", *tmp_paths(base), *size, "--model=cnn_ctc", "--sequence=none", "--epochs=3",
                     "--batch_size=32", "--augment=0", "--run=ctc", "--show=4").stdout
    best = max(float(r["seq_acc"]) for r in read_results(base / "results.txt"))  # validation
    assert best >= CTC_MIN_SEQ_ACC, out[-2000:]

    predictor = Predictor(str(base / "weights" / "ctc_best.pt"))
    assert predictor.ckpt["head"] == "ctc" and predictor.ckpt["build_args"]["sequence"] == "none"
    test = data.load_folder(str(base / "test"), predictor.codec, predictor.width, predictor.height, predictor.channels)
    texts, _, _ = predictor.predict_arrays(test.images)
    right = [t for t, p in zip(test.texts, texts) if t == p]
    assert abs(len(right) / len(texts) - predictor.ckpt["test_accuracy"]) < 1e-6  # what train.py reported
    assert {len(t) for t in right} == {3, 4, 5}  # every length is read
    assert any(re.search(r"(.)\1", t) for t in right)  # and genuine doubles survive decoding


@pytest.mark.slow
def test_train_refuses_a_trick_the_model_lacks(variable_digits):
    p = run_script("train.py", *tmp_paths(variable_digits), f"--charset={DIGITS}", "--length=(3,5)",
                   "--image_width=128", "--image_height=48", "--model=densenet121", "--ibn=1", check=False)
    assert p.returncode != 0 and "IBN=True does not apply to densenet121" in p.stdout and "Traceback" not in p.stdout


@pytest.mark.slow
def test_zoo_table_rows(variable_digits, tmp_path):
    """zoo_table.py (the README's first-look table): one row per model named, the figures in range; the CTC
    model without RNN learns in its budget (it reads 88 % of 0-9A-Z captchas after 60 s in the README). A
    budget of steps, not seconds, so the machine's load cannot starve it."""
    size = [f"--charset={DIGITS}", "--length=(3,5)", "--image_width=128", "--image_height=48", "--threads=1"]
    out = tmp_path / "table.md"
    run_script("benchmarks/zoo_table.py", *tmp_paths(variable_digits), *size, "--models=cnn,cnn_ctc", "--sequence=none",
               "--channels=1", "--augment=0", "--steps=120", "--batch_size=32", "--repeats=5", f"--out={out}")
    lines = out.read_text().splitlines()
    assert lines[0].startswith("| model | head | params (M) | feature map | CPU latency (ms)") and len(lines) == 4
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert set(rows) == {"cnn", "cnn_ctc"} and rows["cnn"][1] == "fixed" and rows["cnn_ctc"][1] == "ctc"
    for cells in rows.values():
        params, latency, seen, char_acc, seq_acc = (float(cells[i]) for i in (2, 4, 5, 6, 7))
        assert params > 0 and latency > 0 and seen == 120 * 32 and 0 <= seq_acc <= char_acc <= 1
        assert re.fullmatch(r"\d+x\d+x\d+", cells[3])
    assert float(rows["cnn_ctc"][7]) >= 0.2  # chance for 3-5 digits is below 1e-3; measured: 0.595 after 120 steps


@pytest.mark.slow
def test_zoo_table_refuses_an_unknown_model_or_an_option_no_model_takes():
    p = run_script("benchmarks/zoo_table.py", "--models=cnn,resnet19", check=False)
    assert p.returncode != 0 and "resnet19" in p.stdout and "Traceback" not in p.stdout
    p = run_script("benchmarks/zoo_table.py", "--models=cnn,cnn_ctc", "--ibn=1", check=False)
    assert p.returncode != 0 and "IBN=True applies to none of cnn, cnn_ctc" in p.stdout and "Traceback" not in p.stdout
