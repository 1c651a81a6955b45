"""Folders of PNG/JPEG images as `RawData`: class subfolders, optional train/test folders, or normal/abnormal dirs.

Layouts under `prepare.path`:
- class subfolders `<path>/<class>/*.png` (labels: the folder names; integer names keep their value);
- the same under `<path>/train/` and `<path>/test/`: `test` becomes the predefined test set (as t10k);
- anomalib style: `prepare.normal_dir` and `prepare.abnormal_dir` (relative to `path`) hold normal
  and anomalous images; the anomaly flag comes from the folder. `prepare.normal_test_dir` holds normal
  images for the test split only (test is then these and every anomalous image), `prepare.mask_dir` a
  defect mask per anomalous image (same name, or MVTec AD's `<name>_mask`), for evaluation only.
Images are decoded with Pillow, converted to grayscale or RGB (`prepare.image_mode`) and, when
`prepare.image_size` is set, resized or center-cropped to it. A first pass reads only the headers
(mode and size: mixed ones are named before any decoding). Nothing else is decoded here: the
`RawData` holds `ImageFiles`, which `prepare` splits by index and then decodes split by split,
one image at a time, into uint8 `.npy` files in its output (a DVC out, read back memory-mapped).
Memory holds the file list and one image, not the pixels.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from aeops.data.rawdata import RawData
from aeops.errors import DataError

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
# An image file is untrusted input: its header's size is checked before decoding (a 1 KB PNG can
# declare 65535 × 65535 pixels). 2^27 pixels (134 M) holds a 102-megapixel camera's photos; Pillow's own
# check warns above 89 M and refuses above 179 M, and this bound replaces its warning.
MAX_IMAGE_PIXELS = 1 << 27


def _images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted; other files are skipped (a count is logged)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in EXTENSIONS]
    if len(images) < len(files):
        log.warning("%s: skipped %d file(s) that are not %s", folder, len(files) - len(images), "/".join(EXTENSIONS))
    return images


def list_images(folder: str | Path) -> tuple[list[Path], int]:
    """Image files under `folder` (recursively, sorted by relative path, hidden ones left out) and how many other
    files were skipped; one line where the folder is missing or holds no image."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    every = [p for p in root.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    files = sorted(p for p in every if p.suffix.lower() in EXTENSIONS)
    if not files:
        raise DataError(f"{root}: no {'/'.join(EXTENSIONS)} images")
    return files, len(every) - len(files)


def same_stem(files: list[Path], root: Path) -> tuple[Path, Path] | None:
    """The first two files whose paths under `root` differ only in the suffix (a.jpg, a.png), else None: outputs
    named after an image's path without its suffix would collide."""
    seen: dict[str, Path] = {}
    for p in files:
        stem = p.relative_to(root).with_suffix("").as_posix()
        if stem in seen:
            return seen[stem], p
        seen[stem] = p
    return None


def pixel_rows(files: list[Path], shape: list[int] | tuple[int, ...], pixel_max: float, fit: str = "resize") -> np.ndarray:
    """(n, channels·height·width) float32 pixel values at the model's `shape`, in its raw units (0–pixel_max)."""
    c, h, w = shape
    px = decode_images(files, "L" if c == 1 else "RGB", (w, h), fit=fit)
    return px.reshape(len(files), -1).astype(np.float32) * np.float32(pixel_max / 255.0)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_names(roots: list[Path]) -> list[Any]:
    """Sorted class folder names over `roots` (integers when every name is one)."""
    names = sorted({f.name for root in roots for f in _subfolders(root)})
    if not names:
        raise DataError(f"{roots[0]}: no class subfolders (expected {roots[0]}/<class>/*.png, or set prepare.normal_dir)")
    return [int(n) for n in names] if all(n.isdigit() for n in names) else names


def _classes(root: Path, names: list[Any]) -> tuple[list[Path], np.ndarray]:
    """Files and integer labels of `<root>/<class>/*` (an integer name is its own label, else its index)."""
    files, labels = [], []
    for folder in _subfolders(root):
        name = int(folder.name) if isinstance(names[0], int) else folder.name
        found = _images(folder)
        files += found
        labels += [name if isinstance(name, int) else names.index(name)] * len(found)
    return files, np.asarray(labels, np.int64)


def image_header(path: Path) -> tuple[str, tuple[int, int]]:
    """(Pillow mode, (width, height)) without decoding; an unreadable file is one line."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_IMAGE_PIXELS decides below
            with Image.open(path) as im:
                mode, size = im.mode, im.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({str(err).splitlines()[0][:120]})") from None
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: {size[0]}×{size[1]} pixels, at most {MAX_IMAGE_PIXELS:,} pixels an image; "
                        "downscale it first")
    return mode, size


def _plan(files: list[Path], mode: str, size: list[int] | None) -> tuple[str, tuple[int, int]]:
    """The Pillow mode ('L' or 'RGB') and (width, height) every image is turned into; one line on a mix."""
    headers = [image_header(p) for p in files]
    if mode == "auto":
        gray = [m in GRAY_MODES for m, _ in headers]
        if any(gray) and not all(gray):
            minority = gray.count(True) < len(gray) / 2
            odd = next(p for p, g in zip(files, gray) if g == minority)
            kind = "grayscale" if minority else "colour"
            raise DataError(f"{odd}: {kind} among {'colour' if minority else 'grayscale'} images (mixed modes); "
                            "set prepare.image_mode to grayscale or rgb")
        mode = "grayscale" if all(gray) else "rgb"
    if size is None:
        first = headers[0][1]
        odd = next(((p, s) for p, (_, s) in zip(files, headers) if s != first), None)
        if odd is not None:
            raise DataError(f"{odd[0]}: {odd[1][0]}x{odd[1][1]} pixels but {files[0].name} is "
                            f"{first[0]}x{first[1]} (mixed sizes); set prepare.image_size: [height, width]")
        target = first
    else:
        target = (size[1], size[0])
    return ("L" if mode == "grayscale" else "RGB"), target


def decode_images(files: list[Path], pil_mode: str, size: tuple[int, int], fit: str = "resize") -> np.ndarray:
    """(n, channels, height, width) uint8 in `pil_mode` ('L' or 'RGB') at `size` (width, height)."""
    channels = 1 if pil_mode == "L" else 3
    out = np.empty((len(files), channels, size[1], size[0]), dtype=np.uint8)
    decode_into(out, files, pil_mode=pil_mode, size=size, fit=fit)
    return out


def decode_into(out: np.ndarray, files: list[Path], *, pil_mode: str, size: tuple[int, int], fit: str) -> None:
    """Decode `files` one at a time into `out[i]` (an array or a memory map of shape (n, c, h, w))."""
    from PIL import Image, ImageOps

    channels = out.shape[1]
    for i, path in enumerate(files):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_IMAGE_PIXELS decides
                with Image.open(path) as im:
                    if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:  # changed since its header was read
                        raise ValueError(f"{im.size[0]}×{im.size[1]} pixels, at most {MAX_IMAGE_PIXELS:,}")
                    im = im.convert(pil_mode)
                    if im.size != size:
                        im = ImageOps.fit(im, size) if fit == "center_crop" else im.resize(size, Image.Resampling.BILINEAR)
                    pixels = np.asarray(im, dtype=np.uint8)
        except (Image.DecompressionBombError, OSError, ValueError) as err:
            raise DataError(f"{path}: cannot be decoded ({str(err).splitlines()[0][:120]})") from None
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


class ImageFiles:
    """Image files to decode as (c·h·w) rows: indexable like an array (a subset stays undecoded). `masks`: each
    file's defect mask (a path, or None for none: a normal image), carried through every split with its image."""

    def __init__(self, files: list[Path] | np.ndarray, pil_mode: str, size: tuple[int, int], fit: str,
                 masks: list[Path | None] | np.ndarray | None = None):
        self.files = np.asarray(files, dtype=object)
        self.masks = None if masks is None else np.asarray(masks, dtype=object)
        self.pil_mode, self.size, self.fit = pil_mode, size, fit
        self.image_shape = (1 if pil_mode == "L" else 3, size[1], size[0])
        self.shape = (len(self.files), int(np.prod(self.image_shape)))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, rows: Any) -> ImageFiles:
        masks = None if self.masks is None else self.masks[rows]
        return ImageFiles(self.files[rows], self.pil_mode, self.size, self.fit, masks)

    @staticmethod
    def concat(parts: list[ImageFiles]) -> ImageFiles:
        first = parts[0]
        masks = None
        if any(p.masks is not None for p in parts):
            masks = np.concatenate([p.masks if p.masks is not None else np.full(len(p), None, object) for p in parts])
        return ImageFiles(np.concatenate([p.files for p in parts]), first.pil_mode, first.size, first.fit, masks)

    def decode_to(self, path: Path) -> None:
        """Write the images as a uint8 (n, c, h, w) `.npy` file, decoding one at a time."""
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(self), *self.image_shape))
        decode_into(out, list(self.files), pil_mode=self.pil_mode, size=self.size, fit=self.fit)
        out.flush()
        del out

    def decode_masks_to(self, path: Path) -> bool:
        """Write the masks as a uint8 (n, h, w) 0/1 `.npy` file (zeros for an image without one), resized or
        cropped as the images are; False (nothing written) where no image of these has a mask."""
        if self.masks is None or all(m is None for m in self.masks):
            return False
        from PIL import Image, ImageOps

        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(self), *self.image_shape[1:]))
        for i, mask in enumerate(self.masks):
            if mask is None:
                out[i] = 0
                continue
            try:
                with Image.open(mask) as im:
                    im = im.convert("L")
                    if im.size != self.size:
                        nearest = Image.Resampling.NEAREST
                        im = ImageOps.fit(im, self.size, method=nearest) if self.fit == "center_crop" else im.resize(
                            self.size, nearest)
                    values = np.asarray(im, dtype=np.uint8)
            except (OSError, ValueError) as err:
                raise DataError(f"{mask}: mask cannot be decoded ({str(err).splitlines()[0][:120]})") from None
            out[i] = values > 0  # any nonzero value is a defect (0/255, 0/1 and labelled masks alike)
        out.flush()
        del out
        return True


def _mask_for(image: Path, masks: dict[str, Path]) -> Path | None:
    """The mask of `image`: the same name (any image extension), or MVTec AD's `<name>_mask`."""
    return masks.get(image.stem) or masks.get(f"{image.stem}_mask")


def _masks(cfg: Any, root: Path, abnormal: list[Path], normal_dirs: list[Path]) -> list[Path]:
    """Each abnormal image's mask from `prepare.mask_dir`; one line for an image without a mask, a mask without an
    image, a mask another size than its image, or a mask beside a normal image's name."""
    folder = root / cfg.mask_dir
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found (prepare.mask_dir)")
    by_stem = {p.stem: p for p in _images(folder)}
    found = []
    for image in abnormal:
        mask = _mask_for(image, by_stem)
        if mask is None:
            raise DataError(f"{image}: anomalous image without a mask in {folder} (expected {image.stem}.png or "
                            f"{image.stem}_mask.png); add one, or move the image out of prepare.abnormal_dir")
        (_, size), (_, want) = image_header(mask), image_header(image)
        if size != want:
            raise DataError(f"{mask}: mask is {size[0]}x{size[1]} pixels but its image {image.name} is {want[0]}x{want[1]}; "
                            "a mask must have its image's size")
        found.append(mask)
    used = set(found)
    stray = next((m for m in by_stem.values() if m not in used), None)
    if stray is not None:
        normal = {p.stem for d in normal_dirs for p in _images(d)}
        why = "names a normal image" if stray.stem.removesuffix("_mask") in normal else "has no image"
        raise DataError(f"{stray}: mask {why} in {root / cfg.abnormal_dir} (prepare.abnormal_dir); masks are for "
                        "anomalous images only (same name): remove it or add its image")
    return found


def _raw(files: list[Path], plan: tuple[str, tuple[int, int]], *, fit: str, labels: np.ndarray | None,
         is_anomaly: np.ndarray | None, names: list[Any] | None, test: Any = None,
         masks: list[Path | None] | None = None) -> Any:
    x = ImageFiles(files, *plan, fit, masks)
    c, h, w = x.image_shape
    features = [f"px_{i}" for i in range(h * w)] if c == 1 else [f"c{k}_px_{i}" for k in range(c) for i in range(h * w)]
    return RawData(x, labels, is_anomaly, features, (c, h, w), names, test, pixel_max=255.0)  # type: ignore[arg-type]


def load_image_folder(cfg: Any) -> Any:
    """`RawData` from an image folder (see the module docstring for the layouts)."""
    root = Path(cfg.path)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    if cfg.normal_dir is not None:
        return _anomalib_folder(cfg, root)
    sets = {"train": root / "train", "test": root / "test"}
    roots = sets if all(p.is_dir() for p in sets.values()) else {"train": root}
    names = _class_names(list(roots.values()))
    listed = {k: _classes(p, names) for k, p in roots.items()}
    every = [f for files, _ in listed.values() for f in files]
    if not every:
        raise DataError(f"{root}: no {'/'.join(EXTENSIONS)} images in its class subfolders")
    plan = _plan(every, cfg.image_mode, cfg.image_size)
    test = None
    if "test" in listed:
        test = _raw(listed["test"][0], plan, fit=cfg.image_fit, labels=listed["test"][1], is_anomaly=None, names=names)
    return _raw(
        listed["train"][0], plan, fit=cfg.image_fit, labels=listed["train"][1], is_anomaly=None, names=names, test=test
    )


def _anomalib_folder(cfg: Any, root: Path) -> Any:
    """normal_dir + abnormal_dir (+ normal_test_dir, mask_dir): the anomaly flag and the masks from the folders; with
    normal_test_dir, the test split is its images and every anomalous one (train and val stay normal)."""
    names = {"normal_dir": cfg.normal_dir, "abnormal_dir": cfg.abnormal_dir, "normal_test_dir": cfg.normal_test_dir}
    listed: dict[str, list[Path]] = {}
    for key, name in names.items():
        if name is None:
            continue
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (prepare.{key})")
        listed[key] = _images(folder)
        if not listed[key]:
            raise DataError(f"{folder}: no {'/'.join(EXTENSIONS)} images (prepare.{key})")
    normal, abnormal, normal_test = listed["normal_dir"], listed["abnormal_dir"], listed.get("normal_test_dir", [])
    plan = _plan(normal + abnormal + normal_test, cfg.image_mode, cfg.image_size)
    masks: list[Path | None] | None = None
    if cfg.mask_dir is not None:
        masks = list(_masks(cfg, root, abnormal, [root / cfg.normal_dir] + ([root / cfg.normal_test_dir]
                                                                              if cfg.normal_test_dir else [])))
    zeros = [None] * len(normal)
    flags = np.asarray([0] * len(normal) + [1] * len(abnormal), np.int64)
    if not normal_test:
        return _raw(normal + abnormal, plan, fit=cfg.image_fit, labels=None, is_anomaly=flags, names=None,
                    masks=None if masks is None else zeros + masks)
    test = _raw(normal_test + abnormal, plan, fit=cfg.image_fit, labels=None, names=None,
                is_anomaly=np.asarray([0] * len(normal_test) + [1] * len(abnormal), np.int64),
                masks=None if masks is None else [None] * len(normal_test) + masks)
    return _raw(normal, plan, fit=cfg.image_fit, labels=None, is_anomaly=flags[: len(normal)], names=None,
                test=test, masks=None if masks is None else zeros)
