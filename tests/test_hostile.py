"""The crafted-input suite (issue 12): checkpoints, zips, images and command-line values that an attacker, or
a broken disk, would send, each through the paths that take it (the app's upload handlers, the CLI's readers).

Every case asserts: a message naming the file (or option) and the problem; no code run (the pickle payloads
would write a marker file); peak memory under :data:`LIMIT_MB` above the process's memory when the case
started (``crafted.peak_mb``: the resident high-water mark and tracemalloc, reset before each case); nothing left in the
uploads folder by a refused upload. ``pytest tests/test_hostile.py -s`` prints how many cases of each kind
ran and the largest peak.
"""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from qcore import data
from qcore.data import imagefolder
from qcore.env.paths import subdir
from qcore.guards import image_guard, safe_zip
from qcore.nets import weights
from qcore.nets.checkpoint_fit import fit_problem
from qcore.service import uploads
from tests import crafted as c

pytestmark = pytest.mark.usefixtures("one_thread")
LIMIT_MB = 300
PEAKS: dict[str, dict[str, float]] = {"checkpoint": {}, "zip": {}, "image": {}, "cli": {}}


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    lines = [f"{kind}: {len(p)} case(s), largest peak {max(p.values(), default=0):.0f} MB "
             f"({max(p, key=p.get) if p else '-'})" for kind, p in PEAKS.items()]  # fmt: skip
    how = "resident high-water mark and tracemalloc" if c.RSS else "tracemalloc only (Python allocations)"
    print(f"\nhostile inputs, peak memory above each case's start ({how}):\n  " + "\n  ".join(lines))


@pytest.fixture(scope="module", autouse=True)
def _warm(tmp_path_factory):
    """Every path once on good input, so that a case's peak is what the case costs, not first imports."""
    from qcore.cli import main

    root = _folder(tmp_path_factory.mktemp("warm") / "pets", "2.png", c.small_png(90))
    data.load_dataset(f"imagefolder:{root}", image_size=32)
    imagefolder._folder_sets.cache_clear()
    uploads.save_dataset(c.zip_bytes(_png_entries()), "warm.zip")
    uploads.save_checkpoint(c.torch_bytes({"w": torch.ones(2)}), "warm.pt")
    fit_problem("resnet18", {"w": [2]}, 10, 32)
    with pytest.raises(SystemExit):
        main(["sweep", "--batch-size", "0"])
    shutil.rmtree(subdir("uploads"))


def _measure(kind: str, case: str, fn):
    out, mb = c.peak_mb(fn)
    PEAKS[kind][case] = max(PEAKS[kind].get(case, 0.0), mb)
    assert mb < LIMIT_MB, f"{case}: peak {mb:.0f} MB above the start; at most {LIMIT_MB} allowed"
    return out


def _left_in_uploads() -> list[str]:
    root = subdir("uploads")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- checkpoints: at least 12 payloads ---------------------------------------------------------------

def _resnet_state(**changes) -> dict:
    import torchvision

    torch.manual_seed(0)
    sd = torchvision.models.resnet18(num_classes=10).state_dict()
    sd.update(changes)
    return sd


def _torchscript() -> bytes:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated: still what many .pt files out there are
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buf)
    return buf.getvalue()


def _nan_state():
    sd = _resnet_state()
    sd["fc.weight"] = sd["fc.weight"].clone()
    sd["fc.weight"][3, 7] = float("nan")
    return sd


def _inf_state():
    sd = _resnet_state()
    sd["layer1.0.conv1.weight"] = sd["layer1.0.conv1.weight"].clone()
    sd["layer1.0.conv1.weight"][0, 0, 0, 0] = float("-inf")
    return sd


# (case, make(marker) -> bytes, expected message pattern or None when it must load)
CHECKPOINTS = [
    ("compressed-record bomb (1 MB, 1 GiB inflated)", lambda m: c.torch_bomb(2**30),
     r"holds 1 compressed record\(s\) \(\S+/data/0: 1,06\d,\d+ bytes inflating to 1,073,741,824\); torch.save "
     r"never compresses"),
    ("stored record declaring 1 GiB it does not hold", lambda m: c.torch_lying_sizes(2**30),
     r"declares 1,07\d,\d+,\d+ bytes of records in a file of [\d,]+ bytes"),
    ("directory listing 4 million records", lambda m: _zip64_claim([c.Entry("archive/data.pkl", b"x")], 4_000_000),
     r"lists 4,000,000 entries; at most 100,000 are allowed"),
    ("empty file", lambda m: b"", r"is empty \(0 bytes\)"),
    ("bytes of no known format", lambda m: b"\x13\x37" * 2048,
     r"is not a checkpoint: its content is neither safetensors"),
    ("safetensors header claiming 2 GiB", lambda m: (2**31).to_bytes(8, "little") + b'{"a": 1}' + b" " * 64,
     r"safetensors file with a header of 2,147,483,648 bytes; at most 8,388,608"),
    ("safetensors cut short", lambda m: safetensors_bytes({"w": torch.ones(64)})[:60],
     r"safetensors file cut short: its header claims \d+ bytes"),
    ("non-string keys {1: t, 'a': 1}", lambda m: c.torch_bytes({1: torch.ones(2), "a": 1}),
     r"holds no state dict of tensors \(found a dict with 2 entries, 1 of them not tensors \('a': int\)\)"),
    ("non-string keys {0: t}", lambda m: c.torch_bytes({0: torch.ones(2)}),
     r"has 1 key\(s\) that are not names: 0 \(int\); a state dict maps parameter names"),
    ("NaN weight", lambda m: c.torch_bytes(_nan_state()), r"tensor 'fc.weight' \(10, 512\) holds NaN values"),
    ("-Inf weight", lambda m: c.torch_bytes(_inf_state()),
     r"tensor 'layer1.0.conv1.weight' \(64, 64, 3, 3\) holds Inf values"),
    ("NaN in safetensors", lambda m: safetensors_bytes({"fc.bias": torch.tensor([0.0, float("nan")])}),
     r"tensor 'fc.bias' \(2,\) holds NaN values"),
    ("zero-stride view of 2**40 values", lambda m: c.torch_bytes({"w": torch.zeros(1).expand(2**40)}),
     r"tensor 'w' claims 1,099,511,627,776 values of shape \(1099511627776,\) over 4 bytes"),
    ("legacy pickle running exec", lambda m: __import__("pickle").dumps(c.Evil(m), protocol=2),
     r"needs arbitrary code to load .*exec"),
    ("torch zip pickling exec", lambda m: c.torch_bytes({"w": torch.ones(1), "x": c.Evil(m)}),
     r"needs arbitrary code to load .*exec"),
    ("legacy format pickling exec", lambda m: c.torch_bytes({"x": c.Evil(m)}, legacy=True),
     r"needs arbitrary code to load"),
    ("TorchScript archive", lambda m: _torchscript(), r"is a TorchScript archive \(a program, not a state dict\)"),
    ("zip without data.pkl", lambda m: c.zip_bytes([c.Entry("a/b.txt", b"hello")]),
     r"is a zip archive but not a PyTorch checkpoint"),
    ("torch zip cut in half", lambda m: c.torch_bytes(_resnet_state())[:20_000_000],
     r"has no end-of-directory record: it is cut short, or not a zip archive"),
    ("no tensors at all", lambda m: c.torch_bytes({"epoch": 3, "lr": 0.1}),
     r"holds no state dict of tensors \(found a dict with 2 entries, 2 of them not tensors"),
    ("valid safetensors named .pt", lambda m: safetensors_bytes(_resnet_state()), None),
]


@pytest.mark.parametrize("case, make, expected", CHECKPOINTS, ids=[x[0] for x in CHECKPOINTS])
def test_checkpoint_payload(case, make, expected, tmp_path):
    marker = tmp_path / "pwned.txt"
    blob = make(marker)
    name = "payload.pt"
    stored = tmp_path / name
    stored.write_bytes(blob)

    def both():  # the app's upload handler, then the CLI's reader (--weights payload.pt)
        try:
            up = uploads.save_checkpoint(blob, name)
        except ValueError as exc:
            up = exc
        try:
            cli = weights.read_state_dict(stored)
        except ValueError as exc:
            cli = exc
        return up, cli

    up, cli = _measure("checkpoint", case, both)
    assert not marker.exists(), "a payload ran code"
    if expected is None:
        assert isinstance(up, tuple) and up[1] == 122 and up[0].suffix == ".safetensors", up  # named by content
        assert isinstance(cli, dict) and len(cli) == 122, cli
        return
    assert isinstance(up, uploads.UploadError), up
    assert isinstance(cli, weights.WeightsError), cli
    assert str(up).startswith(name) and re.search(expected, str(up)), str(up)
    assert str(stored) in str(cli) and re.search(expected, str(cli)), str(cli)
    assert str(subdir("uploads")) not in str(up)  # the user's file name, never a server path
    assert _left_in_uploads() == []


def test_a_checkpoint_that_does_not_fit_is_named_before_run():
    """A valid one-tensor checkpoint is stored, and the fit check (names and shapes, on the meta device)
    says why it cannot load into the chosen model: the app shows that and keeps Run disabled."""
    path, n, _ = uploads.save_checkpoint(c.torch_bytes({"fc.weight": torch.zeros(10, 512)}), "one.pt")
    assert n == 1
    shapes = uploads.checkpoint_upload(path).info["shapes"]
    problem = fit_problem("resnet18", shapes, 10, 32, name="one.pt")
    assert problem.startswith("one.pt does not fit resnet18: missing keys (121): bn1.bias, bn1.num_batches_tracked")
    full = {k: list(v.shape) for k, v in _resnet_state().items()}
    assert fit_problem("resnet18", full, 10, 32) is None
    assert "head has 10 outputs and the dataset 4 classes" in fit_problem("resnet18", full, 4, 32)


# -- zips: at least 10 ---------------------------------------------------------------------------------

def _zip64_claim(entries: list, claimed: int) -> bytes:
    """An archive of ``entries`` whose zip64 end record claims ``claimed`` entries in a directory to match."""
    body = c.zip_bytes(entries, end=b"")
    return body + c.zip64_end(claimed, claimed * 55, len(body))


def _png_entries(classes=("cats", "dogs"), n=2, root="pets") -> list:
    return [c.Entry(f"{root}/{k}/{i}.png", c.small_png(30 * i)) for k in classes for i in range(n)]


def _flag(entry: c.Entry, **kw) -> c.Entry:
    for k, v in kw.items():
        setattr(entry, k, v)
    return entry


# (case, make(tmp_path) -> bytes, expected pattern, whether zipfile may parse the directory)
ZIPS = [
    ("end record listing 4 million entries", lambda t: _zip64_claim(_png_entries(), 4_000_000),
     r"lists 4,000,000 entries; at most 150,000 are allowed", False),
    ("end record listing 2**40 entries", lambda t: _zip64_claim(_png_entries(), 2**40),
     r"lists 1,099,511,627,776 entries", False),
    ("end record listing 60,000 entries in a directory of 400 bytes", lambda t: c.zip_bytes(_png_entries(),
     end=c.end_record(60_000, 400, 0)), r"a directory of 400 bytes cannot hold the 60,000 entries", False),
    ("200,000 real entries", lambda t: c.many_entries(200_000), r"lists 200,000 entries; at most 150,000", False),
    ("200,000 real entries, the 16-bit count saying 3,392", lambda t: c.many_entries(200_000, wrap=True),
     r"lists more than 150,000 entries in its directory \(its end record says 3,392\)", False),
    ("1 MB inflating to 1 GiB", lambda t: c.zip_bytes(_png_entries() + [c.Entry(
        "pets/cats/zeros.bmp", c.deflate_zeros(2**30), 8, c.crc_zeros(2**30), 2**30)]),
     r"zip entry 'pets/cats/zeros.bmp' inflates 1,0\d\d times \(1,06\d,\d+ to 1,073,741,824 bytes\); at most 100",
     True),
    ("directory under-declaring 100 MB of zeros", lambda t: c.zip_bytes(_png_entries() + [c.Entry(
        "pets/cats/zeros.bmp", c.deflate_zeros(100 * c.MiB), 8, c.crc_zeros(100 * c.MiB), 1000)]),
     r"zip entry 'pets/cats/zeros.bmp' cannot be extracted: BadZipFile: Bad CRC-32", True),
    ("2,500 entries of 1 MiB (each under the ratio floor)", lambda t: c.zip_bytes(_png_entries() + [c.Entry(
        f"pets/dogs/z{i}.bmp", c.deflate_zeros(c.MiB), 8, c.crc_zeros(c.MiB), c.MiB) for i in range(2500)]),
     r"the zip archive would unpack to 2,621,\d+,\d+ bytes; at most 2,000,000,000", True),
    ("300-character name", lambda t: c.zip_bytes(_png_entries() + [c.Entry("pets/cats/" + "x" * 296 + ".png",
     c.small_png())]), r"zip entry 'pets/cats/xxx.*' is refused: a part of its name is 300 bytes long; at most 255",
     True),
    ("file/folder clash cats/x and cats/x/1.png", lambda t: c.zip_bytes(_png_entries() + [
        c.Entry("pets/cats/x", b"a file"), c.Entry("pets/cats/x/1.png", c.small_png())]),
     r"zip entry 'pets/cats/x' is a file, but 'pets/cats/x/1.png' needs a folder of that name", True),
    ("cats/. beside cats/1.png", lambda t: c.zip_bytes([c.Entry("cats/.", b"dot"), c.Entry("cats/1.png",
     c.small_png()), c.Entry("dogs/1.png", c.small_png())]),
     r"zip entry 'cats/.' is a file, but 'cats/1.png' needs a folder of that name", True),
    ("entry that normalises to nothing", lambda t: c.zip_bytes(_png_entries() + [c.Entry("./.", b"x")]),
     r"zip entry './.' is refused: its name is empty once '.' and '/' are removed", True),
    ("zip-slip ../../evil.png", lambda t: c.zip_bytes(_png_entries() + [c.Entry("../../evil.png", b"x")]),
     r"zip entry '../../evil.png' is refused: it has a '..' component", True),
    ("absolute path", lambda t: c.zip_bytes(_png_entries() + [c.Entry("/tmp/qcore-evil.png", b"x")]),
     r"zip entry '/tmp/qcore-evil.png' is refused: it has an absolute path", True),
    ("symbolic link", lambda t: c.zip_bytes(_png_entries() + [c.Entry("pets/cats/l.png", b"/etc/passwd",
     attr=0o120777 << 16)]), r"zip entry 'pets/cats/l.png' is refused: it is a symbolic link", True),
    ("control characters in a name", lambda t: c.zip_bytes(_png_entries() + [c.Entry("pets/cats/a\x1b[2J.png",
     c.small_png())]), r"its name holds control characters", True),
    ("encrypted entry", lambda t: c.zip_bytes(_png_entries() + [_flag(c.Entry("pets/cats/e.png", c.small_png()),
     flags=1)]), r"zip entry 'pets/cats/e.png' is encrypted", True),
    ("unknown compression method 99", lambda t: c.zip_bytes(_png_entries() + [c.Entry("pets/cats/m.png", b"x",
     method=99, crc=0, size=1)]), r"zip entry 'pets/cats/m.png' uses compression method 99", True),
    ("the same name twice", lambda t: c.zip_bytes(_png_entries() + [c.Entry("pets/cats/0.png", c.small_png())]),
     r"zip entry 'pets/cats/0.png' appears twice", True),
    ("split archive", lambda t: c.zip_bytes(_png_entries(), end=c.end_record(4, 300, 0, disk=1)),
     r"one part of a multi-part \(split\) archive", False),
    ("zip cut before its directory", lambda t: c.zip_bytes(_png_entries())[:300],
     r"the zip archive has no end-of-directory record: it is cut short, or not a zip archive", False),
    ("a PNG named .zip", lambda t: c.small_png(), r"is not a zip archive \(its content does not start with 'PK'\)",
     False),
    ("one class", lambda t: c.zip_bytes(_png_entries(("cats",))),
     r"holds one class folder with images \('cats'\); a classifier needs at least two", True),
    ("no images (two folders of text)", lambda t: c.zip_bytes([c.Entry("a/x.txt", b"t"), c.Entry("b/y.txt", b"t")]),
     r"holds no readable images in class folders \(it has 2 file\(s\) that are not images\)", True),
    ("one image per class (an empty test split)", lambda t: c.zip_bytes(_png_entries(n=1)),
     r"class\(es\) 'cats' \(1\), 'dogs' \(1\) have fewer than 2 readable images", True),
    ("images that are not images", lambda t: c.zip_bytes([c.Entry(f"{k}/{i}.jpg", b"<html>") for k in "ab"
                                                          for i in range(3)]),
     r"holds no readable images in class folders \(it has 6 image file\(s\) that cannot be used\)", True),
]


@pytest.mark.parametrize("case, make, expected, parses", ZIPS, ids=[x[0] for x in ZIPS])
def test_hostile_zip(case, make, expected, parses, tmp_path, monkeypatch):
    blob = make(tmp_path)
    if not parses:  # refused from the end record alone: zipfile never parses the directory
        def never(*a, **k):
            raise AssertionError("zipfile parsed a directory that the end record should have refused")

        monkeypatch.setattr(zipfile, "ZipFile", never)
    name = "mine.zip"
    out = _measure("zip", case, lambda: uploads.save_dataset(blob, name))
    assert isinstance(out, uploads.UploadError), out
    assert str(out).startswith(name) and re.search(expected, str(out)), str(out)
    assert str(subdir("uploads")) not in str(out) and str(tmp_path) not in str(out)
    assert _left_in_uploads() == []
    assert not Path("/tmp/qcore-evil.png").exists() and not (tmp_path.parent / "evil.png").exists()


def test_a_219_mb_directory_of_4_million_entries_is_refused_from_its_end_record(tmp_path, monkeypatch):
    """The report's flood: a zip whose directory really is 220 MB (here a sparse file: no disk is used).
    The end record is read from the file's last bytes; zipfile never parses the directory."""
    flood = c.sparse_flood(tmp_path / "flood.zip", 4_000_000)
    assert flood.stat().st_size > 200_000_000 and flood.stat().st_blocks * 512 < 1_000_000

    def never(*a, **k):
        raise AssertionError("zipfile parsed the directory")

    monkeypatch.setattr(zipfile, "ZipFile", never)
    out = _measure("zip", "sparse 220 MB directory of 4 million entries",
                   lambda: uploads.unpack_zip(flood, tmp_path / "dest"))
    assert isinstance(out, data.DatasetError), out
    assert "the zip archive lists 4,000,000 entries; at most 150,000 are allowed" in str(out), str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flood.zip"]


# -- images: at least 6 -----------------------------------------------------------------------------------

# (case, make() -> (file name, bytes), what happens: "too large" | "unreadable" | "decoded")
IMAGES = [
    ("12000x12000 PNG of 140 KB", lambda: ("bomb.png", c.png(12000, 12000)), "too large"),
    ("9000x9000 RGB PNG, under Pillow's warning", lambda: ("big.png", c.png(9000, 9000, 2)), "too large"),
    ("BMP header claiming 30000x30000", lambda: ("huge.bmp", c.bmp_header(30000, 30000)), "too large"),
    ("GIF screen of 7000x7000", lambda: ("screen.gif", c.gif_screen(7000, 7000)), "too large"),
    ("PNG zTXt chunk inflating to 100 MB", lambda: ("text.png", c.png(16, 16, 2, text_bomb=100 * c.MiB)),
     "unreadable"),
    ("truncated PNG", lambda: ("cut.png", c.png(200, 200, 2)[:80]), "unreadable"),
    ("HTML named .jpg", lambda: ("page.jpg", b"<html><body>not a photo</body></html>"), "unreadable"),
    ("30,000,000 x 1 PNG (an extreme shape)", lambda: ("line.png", c.png(30_000_000, 1)), "decoded"),
    ("6000x6000 RGB PNG (36 MP, just under the limit)", lambda: ("photo.png", c.png(6000, 6000, 2)), "decoded"),
    ("6000x6000 16-bit grey PNG", lambda: ("deep.png", c.png(6000, 6000, 0, depth=16)), "decoded"),
    ("6000x6000 RGBA PNG", lambda: ("alpha.png", c.png(6000, 6000, 6)), "decoded"),
]


def _folder(root: Path, name: str, blob: bytes) -> Path:
    for k in ("cats", "dogs"):
        (root / k).mkdir(parents=True)
        for i in range(2):
            (root / k / f"{i}.png").write_bytes(c.small_png(50 * i))
    (root / "cats" / name).write_bytes(blob)
    return root


@pytest.mark.parametrize("case, make, outcome", IMAGES, ids=[x[0] for x in IMAGES])
def test_hostile_image(case, make, outcome, tmp_path):
    name, blob = make()
    root = _folder(tmp_path / "pets", name, blob)
    imagefolder._folder_sets.cache_clear()
    bundle = _measure("image", case, lambda: data.load_dataset(f"imagefolder:{root}", image_size=32))
    assert isinstance(bundle, data.DatasetBundle), bundle
    skipped = {"too large": 1, "unreadable": 1, "decoded": 0}[outcome]
    assert bundle.skipped_files == skipped and len(bundle.train) + len(bundle.test) == 5 - skipped
    if outcome == "too large":
        assert "1 image(s) larger than 40 megapixels skipped" in bundle.notes, bundle.notes
        with pytest.raises(image_guard.ImageTooLarge, match=rf"^{name} (is \d+ x \d+ pixels|has more pixels)"):
            image_guard.open_image(root / "cats" / name)
    elif outcome == "unreadable":
        assert "1 unreadable file(s) skipped" in bundle.notes, bundle.notes
    else:
        assert not bundle.notes and bundle.train[0][0].shape == (3, 32, 32)
    # the same file in an upload: counted in what the app shows, the upload kept (it still has 2 + 2 images)
    blob_zip = c.zip_bytes(_png_entries() + [c.Entry(f"pets/cats/{name}", blob)])
    dataset = _measure("image", case + " (upload)", lambda: uploads.save_dataset(blob_zip, "pets.zip"))
    assert isinstance(dataset, str), dataset
    summary = uploads.dataset_summary(dataset)
    assert (summary.too_large, summary.unreadable) == ((1, 0) if outcome == "too large" else (0, 1)
                                                       if outcome == "unreadable" else (0, 0))
    assert summary.classes == {"cats": 2 + (outcome == "decoded"), "dogs": 2}
    imagefolder._folder_sets.cache_clear()


def test_the_cli_prints_the_skipped_images(tmp_path, capsys):
    """The skipped counts reach the CLI's output (they used to stay in the FP32 row's notes)."""
    import torchvision

    from qcore.cli import main

    root = _folder(tmp_path / "pets", "bomb.png", c.png(12000, 12000))
    (root / "dogs" / "cut.png").write_bytes(c.png(200, 200, 2)[:80])
    torch.manual_seed(0)
    ckpt = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), ckpt)
    code = main(["sweep", "--model", "resnet18", "--dataset", f"imagefolder:{root}", "--weights", str(ckpt),
                 "--precision", "fp32", "--image-size", "32", "--calib-size", "2", "--latency-budget", "0.1",
                 "--no-store"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "note: 1 unreadable file(s) skipped" in err and "note: 1 image(s) larger than 40 megapixels skipped" in err
    imagefolder._folder_sets.cache_clear()


def test_imagefolder_root_is_refused_at_once_and_proc_is_never_walked():
    out = _measure("image", "imagefolder:/", lambda: data.load_dataset("imagefolder:/", 32))
    assert isinstance(out, data.DatasetError) and str(out).startswith("/ is a system folder, not a dataset"), out
    with pytest.raises(data.DatasetError, match=r"^/proc/\d+ is a system folder, not a dataset"):
        imagefolder.imagenet_folder(Path("/proc/self"))


# -- command-line values: at least 20 -------------------------------------------------------------------------

CLI = [
    (["sweep", "--batch-size", "0"], "--batch-size: '0' is not allowed; allowed: 1..1024"),
    (["sweep", "--batch-size", "100000"], "--batch-size: '100000' is not allowed; allowed: 1..1024"),
    (["sweep", "--batch-size", "-3"], "--batch-size: '-3' is not allowed"),
    (["sweep", "--batch-size", "1.5"], "--batch-size: '1.5' is not an integer; allowed: 1..1024"),
    (["sweep", "--batch-size", "many"], "--batch-size: 'many' is not an integer"),
    (["sweep", "--seed", str(2**65)], "--seed: '36893488147419103232' is not allowed; allowed: 0..2,147,483,647"),
    (["sweep", "--seed", "-1"], "--seed: '-1' is not allowed"),
    (["sweep", "--image-size", "4"], "--image-size: '4' is not allowed; allowed: 8..1024"),
    (["sweep", "--image-size", "5000"], "--image-size: '5000' is not allowed; allowed: 8..1024"),
    (["sweep", "--input-size", "0"], "--input-size: '0' is not allowed; allowed: 8..1024"),
    (["sweep", "--calib-size", "0"], "--calib-size: '0' is not allowed; allowed: 1..60,000"),
    (["sweep", "--calib-size", "1000000000"], "--calib-size: '1000000000' is not allowed"),
    (["sweep", "--eval-limit", "0"], "--eval-limit: '0' is not allowed; allowed: 1..1,000,000 (evaluation images) "
                                     "or 'all'"),
    (["sweep", "--eval-limit", "1e12"], "--eval-limit: '1e12' is not an integer"),
    (["sweep", "--latency-budget", "0"], "--latency-budget: '0' is not allowed; allowed: 0.1..300"),
    (["sweep", "--latency-budget", "nan"], "--latency-budget: 'nan' is not allowed"),
    (["sweep", "--latency-budget", "inf"], "--latency-budget: 'inf' is not allowed"),
    (["sweep", "--latency-budget", "1e9"], "--latency-budget: '1e9' is not allowed"),
    (["sweep", "--group-size", "7"], "--group-size: '7' is not allowed; allowed: 16, 32, 64, 128, 256"),
    (["sweep", "--percentile", "101"], "--percentile: '101' is not allowed; allowed: more than 50 up to 100"),
    (["sweep", "--percentile", "50"], "--percentile: '50' is not allowed"),
    (["sweep", "--percentile", "nan"], "--percentile: 'nan' is not allowed"),
    (["sweep", "--precision", "int3"], "--precision: 'int3' is not allowed; allowed: fp32, fp16, bf16, int8, int4"),
    (["sweep", "--mode", "turbo"], "--mode: 'turbo' is not allowed; allowed: static, dynamic, weight-only"),
    (["sweep", "--granularity", ","], "--granularity: ',' holds no value"),
    (["sweep", "--device", "tpu"], "--device: invalid choice: 'tpu'"),
    (["sweep", "--batch-size", "1024", "--input-size", "1024"],
     "--batch-size/--input-size: batch_size=1024 at 1024x1024 pixels is 3,221,225,472 input values"),
    (["sweep", "--resume", "cli-0", "--model", "vgg11"], "--resume: the job's settings are stored with it; drop "
                                                         "--model"),
    (["train", "--model", "resnet18", "--dataset", "fashion-mnist", "--epochs", "0"],
     "--epochs: '0' is not allowed; allowed: 0.01..1000"),
    (["train", "--model", "resnet18", "--dataset", "fashion-mnist", "--seed", str(2**65)], "--seed: '3689"),
    (["train", "--model", "resnet18", "--dataset", "fashion-mnist", "--image-size", "2000"],
     "--image-size: '2000' is not allowed"),
    (["runs", "--limit", "0"], "--limit: '0' is not allowed; allowed: 1..10,000,000"),
    (["worker", "--idle-exit", "-1"], "--idle-exit: '-1' is not allowed"),
]


@pytest.mark.parametrize("argv, expected", CLI, ids=[" ".join(a) for a, _ in CLI])
def test_bad_cli_value_is_a_usage_error(argv, expected, capsys):
    from qcore.cli import main

    def run():
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        return exit_.value.code

    code = _measure("cli", " ".join(argv), run)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"python -m qcore {argv[0]}: error: argument {expected}" in err, err
    assert err.startswith("usage: python -m qcore")


@pytest.fixture(autouse=True)
def _no_stray_files():
    yield
    shutil.rmtree(subdir("uploads"), ignore_errors=True)
    assert not Path("/tmp/qcore-evil.png").exists()


def test_the_suite_has_the_cases_the_issue_asks_for():
    assert len(CHECKPOINTS) >= 12 and len(ZIPS) + 1 >= 10 and len(IMAGES) >= 6 and len(CLI) >= 20
    assert safe_zip.ZipLimits().max_entries == 150_000
