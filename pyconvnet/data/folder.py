"""ImageNet-style image folders: root/<split>/<class>/<image>.{JPEG,jpg,jpeg,png}.

Images are decoded lazily with Pillow (in the loader's worker processes when it has any).
A file that Pillow cannot decode (not an image, corrupt, truncated) makes ds[i] raise
CorruptImageError; DataLoader catches exactly that, warns once per path and drops the sample
together with its label, so labels always stay aligned with images.
"""
import os
import struct

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")  # compared lower-case


class CorruptImageError(ValueError):
    """An image file that cannot be decoded; .path and .reason say which and why."""

    def __init__(self, path, reason):
        super().__init__(f"cannot decode image {path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):  # pickles across worker processes with both attributes
        return (CorruptImageError, (self.path, self.reason))


class CorruptImageWarning(UserWarning):
    """Issued by DataLoader, once per path, when it skips an undecodable image."""


def decode_image(path):
    """Decode an image file to (3,H,W) float32 RGB in [0, 1]; CorruptImageError on failure.

    Grayscale, palette and CMYK files are converted to RGB. Pillow's default of refusing
    truncated files (ImageFile.LOAD_TRUNCATED_IMAGES=False) is relied on, not changed.
    """
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))  # convert() forces the full decode
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as e:
        raise CorruptImageError(path, f"{type(e).__name__}: {e}") from None
    return rgb.transpose(2, 0, 1).astype(np.float32) / np.float32(255)  # HWC uint8 -> CHW


def read_synset_map(path):
    """Parse lines "n01440764 tench, Tinca tinca" into {"n01440764": "tench, Tinca tinca"}."""
    mapping = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected '<synset> <name>', got {line!r}")
            mapping[parts[0]] = parts[1]
    return mapping


class ImageFolder:
    """Lazily decoded images under root/<split>/<class>/.

    folders: the class folder names in label order (sorted names found under the split by
    default). Pass the training set's .folders when opening another split so that a class
    missing there cannot shift the labels. synset_map: optional path of a "wnid name" file
    (or a dict) giving readable .classes; without it .classes are the folder names.

    ds[i] -> (image (3,H,W) float32 in [0, 1], label int); images differ in size, so a
    DataLoader needs a transform that brings them to one size (e.g. RandomCrop after
    ResizeShorter). ds.samples is the list of (path, label); ds.labels (N,) int64.
    """

    def __init__(self, root, split="train", synset_map=None, folders=None):
        self.root = os.fspath(root)
        self.split_dir = os.path.join(self.root, split)
        if not os.path.isdir(self.split_dir):
            raise ValueError(f"ImageFolder: split folder {self.split_dir} does not exist")
        found = sorted(e.name for e in os.scandir(self.split_dir) if e.is_dir())
        if not found:
            raise ValueError(f"ImageFolder: no class folders in {self.split_dir}")
        if folders is None:
            folders = found
        else:
            unknown = sorted(set(found) - set(folders))
            if unknown:
                raise ValueError(f"ImageFolder: folders {unknown[:5]} in {self.split_dir} "
                                 f"are not among the {len(folders)} given classes")
        self.folders = list(folders)
        self.samples = self._scan(set(found))
        self.labels = np.array([label for _, label in self.samples], dtype=np.int64)
        self.classes = self._class_names(synset_map)

    def _scan(self, present):
        """(path, label) of every image file, folders in label order, files sorted by name."""
        samples = []
        for label, folder in enumerate(self.folders):
            if folder not in present:
                continue  # a class absent from this split (only when folders= is given)
            directory = os.path.join(self.split_dir, folder)
            names = sorted(n for n in os.listdir(directory)
                           if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
            if not names:
                raise ValueError(f"ImageFolder: class folder {directory} has no "
                                 f"{'/'.join(IMAGE_EXTENSIONS)} files")
            samples.extend((os.path.join(directory, n), label) for n in names)
        return samples

    def _class_names(self, synset_map):
        if synset_map is None:
            return list(self.folders)
        mapping = synset_map if isinstance(synset_map, dict) else read_synset_map(synset_map)
        missing = [f for f in self.folders if f not in mapping]
        if missing:
            where = "synset map" if isinstance(synset_map, dict) else f"synset map {synset_map}"
            raise ValueError(f"ImageFolder: {where} has no entry for class folders "
                             f"{missing[:5]} ({len(missing)} missing)")
        return [mapping[f] for f in self.folders]

    @property
    def num_classes(self):
        return len(self.folders)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        return decode_image(path), label
