"""`aeops compress` / `aeops decompress`: a folder of images to one `.aez` file and back.

Images stream through in chunks of CHUNK images (memory holds one chunk), are brought to the
model's mode and size (colour into a grayscale model is refused), encoded, quantised in the
bundle's latent prior's coordinates (to add about `error` gray levels RMS), and range-coded.
Decompression writes PNGs under the original relative names and sizes. Both write atomically: a
failure leaves no partial file or folder.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from aeops.compression import container
from aeops.compression.codec import SegmentCoder, coder_id
from aeops.compression.prior import FORMAT as PRIOR_FORMAT
from aeops.compression.prior import symbol_table
from aeops.data import images
from aeops.data.images import GRAY_MODES, image_header
from aeops.errors import DataError
from aeops.io import atomic_path
from aeops.scoring.bundle import NETWORK, ModelBundle
from aeops.scoring.reference import registered, resolve_bundle

CHUNK = 256


@dataclass(frozen=True)
class CodecModel:
    """A model bundle with a latent prior, and which registered model version it is (None for a folder)."""

    bundle: ModelBundle
    fingerprint: str
    name: str | None = None
    version: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} version {self.version}" if self.name else f"bundle {self.fingerprint}"

    @property
    def uri(self) -> str | None:
        return registered(self.name, version=self.version) if self.name else None


def fingerprint(bundle: ModelBundle, bundle_dir: Path) -> str:
    """Hash of what decoding uses (weights, scaler, prior): equal fingerprints decode identically."""
    digest = hashlib.sha256((bundle_dir / NETWORK).read_bytes())
    digest.update(json.dumps(bundle.scaler, sort_keys=True).encode())
    digest.update(json.dumps(bundle.latent_prior, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def load_codec_model(model: str, tracking_uri: str) -> CodecModel:
    """A bundle folder, or `models:/<name>/<version>` / `models:/<name>@<alias>` from the registry."""
    path, name, version = resolve_bundle(model, tracking_uri)
    return _checked(path, name, version, model)


def _checked(path: Path, name: str | None, version: str | None, model: str) -> CodecModel:
    bundle = ModelBundle.load(path)
    if not bundle.image_shape:
        raise DataError(f"{model}: a model of table rows; compression needs an image model "
                        "(prepare.source digits, mnist, fashion_mnist or image_folder)")
    if bundle.latent_prior is None or bundle.latent_prior.get("format") != PRIOR_FORMAT:
        what = "no latent prior" if bundle.latent_prior is None else "a latent prior of another aeops version"
        raise DataError(f"{model}: its bundle has {what}; rerun `dvc repro -f evaluate` (and register it again)")
    return CodecModel(bundle, fingerprint(bundle, path), name, version)


def list_images(folder: str | Path) -> tuple[list[Path], int]:
    """Image files under `folder` (`aeops.data.images.list_images`); one line where two would decompress to one name."""
    files, skipped = images.list_images(folder)
    root = Path(folder)
    clash = images.same_stem(files, root)  # decompress writes <name>.png: a.jpg and a.png would overwrite each other
    if clash is not None:
        first, p = clash
        out = p.relative_to(root).with_suffix(".png").as_posix()
        raise DataError(f"{p}: would decompress to {out}, as {first.name} does; rename one of them")
    return files, skipped


def _sizes(files: list[Path], channels: int) -> list[tuple[int, int]]:
    """Original (width, height) of every file; an unreadable or colour-into-grayscale file is one line."""
    sizes = []
    for path in files:
        mode, size = image_header(path)
        if channels == 1 and mode not in GRAY_MODES:
            raise DataError(f"{path}: a colour image ({mode}) but the model is grayscale; convert it, "
                            "or compress with a model trained on colour images")
        sizes.append(size)
    return sizes


def _progress(total: int, desc: str, show: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=desc, file=sys.stderr, disable=None if show else True, leave=False)


def compress_folder(codec: CodecModel, in_dir: str | Path, *, out_file: str | Path, error: float,
                    progress: bool = True) -> dict[str, Any]:
    """Write `out_file`; return the image count, bytes, bits per pixel (of the originals) and clipped codes."""
    import torch

    from aeops.scoring.preprocess import apply_scaler

    if Path(out_file).is_dir():
        raise DataError(f"{out_file}: is a folder; name the .aez file to write (nothing is overwritten)")
    bundle = codec.bundle
    table, pixel_max = symbol_table(bundle.latent_prior, error), bundle.latent_prior["pixel_max"]
    files, skipped = list_images(in_dir)
    names = [p.relative_to(in_dir).as_posix() for p in files]
    container.check_names(names, str(in_dir), hint="rename it: decompress could not write it back")
    sizes = _sizes(files, bundle.image_shape[0])
    h, w = bundle.image_shape[1:]
    header = {"model": {"name": codec.name, "version": codec.version, "fingerprint": codec.fingerprint},
              "coder": coder_id(), "image_shape": bundle.image_shape, "error": error, "count": len(files),
              "names": names,
              "sizes": None if all(s == (w, h) for s in sizes) else [list(s) for s in sizes]}
    coder, network, clipped = SegmentCoder(table), bundle.network(), 0
    with atomic_path(out_file) as tmp, tmp.open("wb") as fh, _progress(len(files), "compress", progress) as bar:
        header_size = size = container.write_header(fh, header)
        for start in range(0, len(files), CHUNK):
            part = files[start:start + CHUNK]
            x = apply_scaler(bundle.scaler, images.pixel_rows(part, bundle.image_shape, pixel_max))
            with torch.no_grad():
                codes = network.encode(torch.from_numpy(x))
            symbols, n_clipped = table.quantise(codes.numpy().astype(np.float64))
            clipped += n_clipped
            size += container.write_segment(fh, len(part), coder.encode(symbols))
            bar.update(len(part))
    pixels = sum(a * b for a, b in sizes)
    return {"images": len(files), "bytes": size, "bpp": 8 * size / pixels, "header_bytes": header_size,
            "clipped_codes": clipped, "skipped_files": skipped, "model": codec.label}


def _open(path: str | Path) -> BinaryIO:
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    return open(path, "rb")


def read_header(path: str | Path) -> dict[str, Any]:
    with _open(path) as fh:
        return container.read_header(fh, str(path))


def decompress_file(codec: CodecModel, in_file: str | Path, out_dir: str | Path,
                    progress: bool = True) -> dict[str, Any]:
    """Write the images of `in_file` as PNGs under `out_dir` (which must not exist or be empty)."""
    import torch
    from PIL import Image

    from aeops.scoring.preprocess import invert_scaler

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: exists and is not an empty folder; nothing is overwritten, name a new folder")
    with _open(in_file) as fh:
        header = container.read_header(fh, str(in_file))
        check_model(header, codec, str(in_file))
        bundle, c, h, w = codec.bundle, *header["image_shape"]
        coder, network = SegmentCoder(symbol_table(bundle.latent_prior, header["error"])), bundle.network()
        names, sizes, done = header["names"], header["sizes"], 0
        with atomic_path(out_dir, replace_dir=True) as tmp, _progress(header["count"], "decompress", progress) as bar:
            tmp.mkdir()
            for rows, words in container.read_segments(fh, str(in_file), header["count"]):
                codes = coder.table.dequantise(coder.decode(words, rows))
                with torch.no_grad():
                    recon = network.decode(torch.from_numpy(codes.astype(np.float32)))
                raw = invert_scaler(bundle.scaler, recon.reshape(rows, -1).numpy())
                px = np.clip(np.rint(raw * (255.0 / bundle.latent_prior["pixel_max"])), 0, 255)
                px = px.astype(np.uint8).reshape(rows, c, h, w)
                for i in range(rows):
                    im = Image.fromarray(px[i, 0] if c == 1 else px[i].transpose(1, 2, 0))
                    if sizes is not None and tuple(sizes[done + i]) != (w, h):
                        im = im.resize(tuple(sizes[done + i]), Image.Resampling.BILINEAR)
                    target = (tmp / names[done + i]).with_suffix(".png")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    im.save(target)
                done += rows
                bar.update(rows)
    return {"images": done, "out_dir": str(out_dir), "model": codec.label}


def check_model(header: dict[str, Any], codec: CodecModel, name: str) -> None:
    """Refuse to decode with another coder, or weights, scaler or prior other than those that encoded
    (the images would come out wrong without an error)."""
    if header["coder"] != coder_id():
        raise DataError(f"{name}: written with coder {header['coder']}, this aeops decodes with {coder_id()}; "
                        "decompress with the aeops version that compressed it")
    written = header["model"]
    if written.get("fingerprint") != codec.fingerprint:
        is_registered = written.get("name") is not None
        what = f"{written['name']} version {written.get('version')}" if is_registered else "a model bundle folder"
        fix = (f"--model {registered(written['name'], version=written.get('version'))}" if is_registered
               else "--model <the bundle folder it was compressed with>")
        raise DataError(f"{name}: compressed with {what} (fingerprint {written.get('fingerprint')}), not with "
                        f"{codec.label} (fingerprint {codec.fingerprint}); decompress with {fix}")
    if header["image_shape"] != list(codec.bundle.image_shape):
        raise DataError(f"{name}: images of shape {header['image_shape']}, the model's are {codec.bundle.image_shape}")
