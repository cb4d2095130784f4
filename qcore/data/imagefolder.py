"""Image folders and uploaded zips: ``imagefolder:<path>`` datasets for qcore.

Any class-per-folder tree (``<folder>/<class>/<image>``). Grayscale, RGBA, 16-bit and CMYK images
are converted to RGB; unreadable files are skipped and counted; a folder with fewer than two
classes is a clear error. Folders named by ImageNet synset (``n01440764``) or ImageNet class name
map onto the pretrained models' class indices. Images are resized and centre-cropped as torchvision's
ImageNet evaluation transform does (short side ``size / 0.875``, bilinear, by default; a sweep passes
the model's own weights' resize and interpolation for ImageNet folders), decoded once and kept as
``uint8`` when they fit in memory, else decoded on access. Uploaded zips are unpacked (and checked) by
:mod:`qcore.service.uploads`; callers name a folder ``imagefolder:<path>`` through :mod:`qcore.data.registry`.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from qcore.data.base import DatasetBundle, DatasetError, TensorImages, folder_name
from qcore.guards import folder_scan, image_guard
from qcore.guards.folder_scan import IMAGE_EXTENSIONS, MIN_IMAGES_PER_CLASS

__all__ = ["IMAGE_EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD", "FileImages", "folder_key", "folder_signature",
           "imagenet_folder", "load_folder"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_EAGER_BYTES = 768 * 2**20  # decoded image folders up to this size are kept in memory

# The 1000 ImageNet-1k synset ids in class-index order (sorted), as base85 varint deltas of their
# numbers: index i of a torchvision ImageNet model is the class of synset folder _imagenet_wnids()[i].
_WNIDS = (
    "{P$PY72(1H?=q?wzz(hr^ML`s0ka>mTiXQl48#nl7|Evrk_*b20pAdaO^Qp>G~F`s3cWIbH`4~;2b%`J0^mgK6^{hnl>x*Hr3{z_"
    "g$si-><r{7mKgdFi2|Su+7syq%m(rX-4dS(vn;v20o($T1CIsSB7+8~4!9ET1^ExP5tkl|4UrDa4XqHy1+iVN4!8o$6^H})0m}sL"
    "0=NR>393Q%RGS8h4AuneJE#Mp2iZ}w1fB-b3B4byBD({qBCJTh0-+q>K7a+IBgR(n2#p7pBc>+g0-e|amLB*N%R9^{+iU9sj|#RY"
    "fg<&5u1Tl?uMO4+oe{nXu>-yc>Lcu1r~%v_h6jfYs|Ab<?F!ijvm4?E%ml15%@Lmjjwj_Gk8|}T^9<NNxhH`b<QtJZq5+x#j{%_p"
    "mIH_ahymOJyakW}erBctz5|s8YL)}@0b{oUW^UgBr~$+Qs{zphl?SW=+W~87gaLby0j~k^27m&;0-^zab&mm*0nP(cPg$@5xB<Td"
    "wE=(D2BHD10dI)`g9F<Fm;sIffdT#kr~%{yi2;oPq5<s#pa{?cvju8dp#fcp0oDPp0f+(E0jL3R-~*}wh5~Kj0bE(l0)YYS0)zqH"
    "1GEEXdYl2C0<!^_0jmL&0p9_I1Azf|)dA!Jy#k{FwgXsKvjK$zwE?67j{%YfkOH{|jRW5f{{^A~ssrp3a_a%h0p0`D3C#_)3iJY~"
    "0q_C01Hc8O4uJ@p2hIY!82kpP&;j29pAC!*o(BCCn+}5?qF=It0oG!lHmewy54#SM6@;My{1cxj@E@83?K#W~wh^TT^#%O`+?4|0"
    "4T2N>9jXYn4Uco49lKAvBZLiv4WYgP=MRM<{Rf=|kqd$&vMQhuqYSAVp%UOA(FDT+(r>T=<{^g%jRNulw+es<^9<!S)fca{0q6qA"
    "2ZIdS0`m!m3Y7t=2e1d51JDDV2$&A>1knbZ0-gej9HJDW9lZnXDS!on9I#&ZQ^cGE{0EYQ0`Ulo5x!ZdSAhq{6r>oJ9qv+r8ORga"
    "Gvo`-9pxE?mjSRF_kR8nt)2nnHI)UyC9DY17Mu)@1fUjx0g?f+5tRk?2hI@i4VxOo55xi66O##u0nIPR0?r4L4VW&%0`m@}MCu0C"
    "6POdO2*DDMd;AKRBZecB2!#dUFrg2h8>B|I1g;LH1iV_n7~=!CGlK!{PL&+vLAOQ16_f<y0k&Ge6q*C>1HB~I6z><G4zU8~3C9ZX"
    "GQ%Fe0^v2(1#z_l#cjwD*8!ag-9M!a%^;*n+6IUj$Pe3b$_iS?4cbksOM@i4FTEqqMehr~Xn&Us(g%<TvH`&yfD+vXtT(J8if+J{"
    "0k#65JE#YSJm3hQ9)~l=0p$nMJ=zM365<u;hXJ-l{t4G0njwZ@v;(LFtBnDU39KxIhXJ%yq*~QD#t4oKxJBrF)+3k`wJGZyi~;Tf"
    "^C|2H!zr{M_ha)ozzC*{0ha~O4U+-$3z7oO6VDT=DA5ke46`hdOS1yL43`wq36BS>5Q78UG{_Cq2jUEt5W?O8@Dh#&?ho`1unEEx"
    "=`63g0>1?OF0~%h0i6Z(8LR}w8ijJ!EW#hp7?c%*A@C}{H>^0Q2&xvA43;0E9D^2s8=xN7Qi%ko2!$htNQxZt0=xrM^)<yA?E{`0"
    "+$QN6mH~_e_CSRPs)PaR2*ehE2AL?X1n>cg7M~2;1Cj^S2)Y5H8~O#p7u^nn0gDN$0e}_34ZZ<|1h)jK65}<r3#Uzs0)kcLHOwf6"
    "2=)!m1MCuxQnMYtK=2Ul1kDxv4ebW90^khU3H1V)Gvpbt1l$7F6j8P#z8<v_&kc?xV3j$cA*UksCc^>B1HA(08TtyK5xoW3Blrv3"
    "8>AAKBa#c25S$y^Eus{sF}?wv3fvZy48{lYJEse;7KRqBGv5Zh7nTQwPQ@aZ6TCWJ_!^QA;tG)l<QVHC;e418st=6{j3KTufG3t8"
    ">PxCx^(N{M?g6n4v?H_;*&?$L@Dqn6`vHgrpCq{i#uVHYh6%0)%|Ew>0r6v|Kk)<o7HyXvn+IzDk^$lkoG;fFw*vSgt~;d%lmX`s"
    "umoYD8q^D`9NP+q1>*&!Al@3g4~!1zJD&`LPLOHZ2dV+_F402E2ImZ+5V#Nc7|jZiKd%dt3(pwQBGUwW>IvOO*$AK)&Ii~6)C8I%"
    "$sDvo@E*e_x(cQz?<d_qtp)HZ`XQkSg)xIPu?PGkzChL!_ZOf9y&3cnl0)MalNyo-?+wfcg9y0-<1V#6gdmj-))CSxgckWB%?jxY"
    "ivp1~v;^cJ^BBq&*(p+<4)hSq3e^Xc7t|Qj5Ym310;eUjEbjq?2&@Ez2%#U7391UAD#r}%FsKRH#A@@r4(i4Wh(gQp1o!F|+o}`r"
    "a?cr*2<0->vH|=D`U%#R1gT5m52Fm=0nlx_7o!7l=Lw_)_ydvwln0Xn&=AH)=OmFks~m$3w-3u3q5-`E#0Z}-n?1CI0>I+|ye!td"
    "0mf9#55Wq!Etp!A*8#j#mkHv4O{AFu^MV1NPMrGz-`N6=i3HcK0md=+x&oOWos$;Pi4)+y8MK>F%+Ukbmj}tJ1=+y|<-`@Jg$dW7"
    "4W4Dctpd>&`y$jm;ttK}1em~f"
)


@lru_cache(maxsize=1)
def _imagenet_wnids() -> list[str]:
    raw, out, value, shift, prev = base64.b85decode("".join(_WNIDS)), [], 0, 0, 0
    for byte in raw:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            prev += value
            out.append(f"n{prev:08d}")
            value = shift = 0
    return out


def folder_key(path: Path) -> str:
    """A short, file-name-safe name for a folder's current contents: its last part and a hash of its
    absolute path and :func:`folder_signature` (so a baseline trained on it retrains when images change)."""
    path = Path(path).expanduser().resolve()
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in path.name)[:32] or "root"
    return f"{slug}-{hashlib.sha1(f'{path}|{folder_signature(path)}'.encode()).hexdigest()[:8]}"


def _scan(root: Path) -> folder_scan.Scan:
    try:
        return folder_scan.scan(root)
    except folder_scan.ScanError as exc:
        raise DatasetError(str(exc)) from exc


def folder_signature(root: Path) -> str:
    """A hash of every image file's path, size and modification time under ``root``'s class folders:
    it changes when an image is added, removed, renamed or rewritten."""
    h = hashlib.sha1()
    if root.is_dir():
        for files in _scan(root).classes.values():
            for f in files:
                try:
                    st = f.stat()
                    h.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
                except (OSError, ValueError):  # vanished or unreadable: it will be skipped (and counted)
                    h.update(f"{f}|?\n".encode())
    return h.hexdigest()[:16]


def _to_rgb(im):
    """Any PIL mode to RGB: alpha is composited on white, 16-bit and float greys are rescaled."""
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, dtype=np.float32)
        a = (a - a.min()) * (255.0 / max(float(a.max() - a.min()), 1e-6))
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def _decode(path: Path, size: int, keep: bool, resize: int, interpolation: str) -> Tensor | None:
    """Decode ``path`` fully (so a damaged file fails here, not mid-evaluation); an image over
    :data:`qcore.guards.image_guard.MAX_IMAGE_PIXELS` raises ``ImageTooLarge`` before any pixel is decoded.

    With ``keep``: resize the short side to ``resize`` with ``interpolation`` and centre-crop ``size``;
    return ``uint8 3 x size x size``.
    """
    from PIL import Image, ImageOps

    with image_guard.open_image(path) as im:
        im.draft("RGB", (resize, resize) if keep else (32, 32))  # JPEG: decode at a reduced scale, fast
        im.load()
        if not keep:
            return None
        im = _to_rgb(ImageOps.exif_transpose(image_guard.shrink(im, resize)))
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[interpolation]
    im = image_guard.resize_crop(im, size, resize, resample)
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


class FileImages(Dataset):
    """Image files decoded on access (for folders too big to keep decoded in memory)."""

    def __init__(self, files: list[Path], labels: list[int], size: int, resize: int, interpolation: str):
        self.files, self.labels, self.size = files, labels, size
        self.resize, self.interpolation = resize, interpolation
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        try:
            x = _decode(self.files[i], self.size, True, self.resize, self.interpolation)
        except Exception as exc:
            raise DatasetError(f"{self.files[i]} was readable when the folder was loaded, "
                               f"but not now: {exc}") from exc
        return (x.float().div_(255.0) - self.mean) / self.std, self.labels[i]


def _imagenet_map(classes: list[str]) -> list[int] | None:
    wnids = {w: i for i, w in enumerate(_imagenet_wnids())}
    if all(c in wnids for c in classes):
        return [wnids[c] for c in classes]
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    names = {n.lower(): i for i, n in enumerate(_IMAGENET_CATEGORIES)}
    keys = [c.lower().replace("_", " ") for c in classes]
    return [names[k] for k in keys] if all(k in names for k in keys) else None


def imagenet_folder(root: Path) -> bool:
    """Whether ``root``'s class folders (those holding images) are ImageNet classes, by synset or name."""
    root = Path(root).expanduser().resolve()
    classes = list(_scan(root).classes) if root.is_dir() else []
    return len(classes) >= 2 and _imagenet_map(classes) is not None


def load_folder(root: Path, size: int, resize: int | None = None, interpolation: str = "bilinear") -> DatasetBundle:
    """The bundle for ``imagefolder:<root>``: a seeded, stratified 80/20 train/test split."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a folder; "
                           "expected <folder>/<class name>/<image files>")
    resize = resize or round(size / 0.875)  # torchvision's ImageNet evaluation: 256 then 224
    train, test, classes, skipped, notes = _folder_sets(str(root), size, resize, interpolation,
                                                        folder_signature(root))
    return DatasetBundle(folder_name(root), list(classes), train, test, size, IMAGENET_MEAN,
                         IMAGENET_STD, source=str(root), skipped_files=skipped,
                         imagenet_indices=_imagenet_map(list(classes)), notes=list(notes), resize=resize,
                         interpolation=interpolation)


@lru_cache(maxsize=4)
def _folder_sets(root: str, size: int, resize: int, interpolation: str, _signature: str):
    folder = Path(root)
    found_scan = _scan(folder)
    found, notes = found_scan.classes, []
    for name in found_scan.empty:
        notes.append(f"folder {name!r} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}); ignored")
    if found_scan.unreadable_dirs:
        notes.append(f"{found_scan.unreadable_dirs} folder(s) could not be read (permissions) and were skipped")
    if len(found) < 2:
        what = "no class folders with images" if not found else f"a single class ({next(iter(found))!r})"
        loose = (f" (it holds {found_scan.loose_images} image(s) directly: put them in one sub-folder per class)"
                 if found_scan.loose_images else "")
        raise DatasetError(f"{folder} has {what}{loose}; an image folder needs at least two class subfolders, "
                           "each holding images: <folder>/<class>/<image>")
    all_files = [(f, c) for c, files in enumerate(found.values()) for f in files]
    keep = len(all_files) * 3 * size * size <= _EAGER_BYTES
    kept, skipped, too_large = [], 0, 0
    for f, c in all_files:
        try:
            kept.append((f, c, _decode(f, size, keep, resize, interpolation)))
        except image_guard.ImageTooLarge:
            too_large += 1
        except Exception:  # PIL raises many kinds (OSError, SyntaxError, ValueError, ...)
            skipped += 1
    if skipped:
        notes.append(f"{skipped} unreadable file(s) skipped")
    if too_large:
        notes.append(f"{too_large} image(s) larger than {image_guard.MAX_IMAGE_PIXELS / 1e6:g} megapixels skipped")
    for c, name in enumerate(found):
        n = sum(1 for k in kept if k[1] == c)
        if n < MIN_IMAGES_PER_CLASS:
            raise DatasetError(f"class folder {name!r} in {folder} has {n} readable image(s); each class needs at "
                               f"least {MIN_IMAGES_PER_CLASS} (one to calibrate on, one to evaluate)")
    skipped += too_large
    # Seeded, stratified 80/20 split so calibration (train) and evaluation (test) never share an image.
    g = torch.Generator().manual_seed(0)
    train_idx, test_idx = [], []
    for c in range(len(found)):
        members = [i for i, k in enumerate(kept) if k[1] == c]
        order = [members[j] for j in torch.randperm(len(members), generator=g).tolist()]
        n_test = round(len(order) * 0.2) if len(order) >= 5 else (1 if len(order) >= 2 else 0)
        test_idx += order[:n_test]
        train_idx += order[n_test:]

    def make(idx: list[int]) -> Dataset:
        idx = sorted(idx)
        if keep:
            images = (torch.stack([kept[i][2] for i in idx]) if idx
                      else torch.empty(0, 3, size, size, dtype=torch.uint8))
            ds = TensorImages(images, torch.tensor([kept[i][1] for i in idx], dtype=torch.long), size,
                              IMAGENET_MEAN, IMAGENET_STD)
            ds.files = [kept[i][0] for i in idx]  # so a calibration list can name images by path
            return ds
        return FileImages([kept[i][0] for i in idx], [kept[i][1] for i in idx], size, resize, interpolation)

    return make(train_idx), make(test_idx), tuple(found), skipped, tuple(notes)
