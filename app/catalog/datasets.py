"""Torch-free catalogue of the datasets the service knows: sizes, normalisation, augmentation, file layout.

The API uses it to describe datasets (GET /v1/datasets) and to reject a batch whose dataset files are
absent before anything is queued; the worker uses the same entries (and ``DatasetUnavailable``) so the
two sides never disagree about where files live or what the layout is. Availability is decided from
file existence only: parsing the files is the worker's job.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Source = Literal["generated", "pickle", "image_folder"]
# Which part of the test split a method evaluates on: all of it, or one half of NAS-Bench-201's split
# (CIFAR-100 test set, ImageNet16-120 validation set) as listed in the benchmark's own index file.
HeldOutSplit = Literal["all", "x-valid", "x-test"]
SPLIT_FILE_FORMAT = (
    "a JSON object with keys 'xvalid' and 'xtest', each a list of 0-based indices into the test split, "
    "bare or as the benchmark's typed pair ('int' then the list); the lists are disjoint and together "
    "cover the whole test split"
)


def _per_255(values: tuple[float, float, float]) -> tuple[float, float, float]:
    # The spec states statistics on the 0..255 scale; the loader works on 0..1 after dividing by 255.
    return (values[0] / 255.0, values[1] / 255.0, values[2] / 255.0)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    summary: str
    num_classes: int
    input_size: int  # square images, this many pixels a side
    train_size: int  # nominal size of the full train split (synthetic: at its default options)
    test_size: int
    mean: tuple[float, float, float] | None  # per channel on the 0..1 scale; None = no normalisation
    std: tuple[float, float, float] | None
    crop_padding: int  # default train augmentation: random crop of input_size after this padding; 0 = none
    flip: bool  # default train augmentation: random horizontal flip
    source: Source
    folder: str | None  # below the data directory; None for generated datasets
    required: tuple[str, ...]  # files (or directories, ending in "/") that must exist inside ``folder``
    layout: str  # the expected layout, quoted in error messages
    # NAS-Bench-201's file splitting the test split into x-valid / x-test, directly in the data directory
    # under the benchmark's own name; None: the dataset has no official split.
    split_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "normalisation": None
            if self.mean is None or self.std is None
            else {"mean": list(self.mean), "std": list(self.std)},
            "augmentation": {
                "crop": None
                if self.crop_padding == 0
                else {"size": self.input_size, "padding": self.crop_padding},
                "flip": self.flip,
                "cutout": "optional (config 'cutout'), off by default",
            },
            "source": self.source,
            "folder": self.folder,
            "layout": self.layout,
            "split_file": self.split_file,
        }


class DatasetUnavailable(Exception):
    """A dataset's files are missing or malformed. The message names the path searched and the layout
    expected, because the operator has to fix the files: the service never downloads anything."""

    def __init__(self, name: str, path: Path | str, problem: str, layout: str) -> None:
        self.name = name
        self.path = str(path)
        self.problem = problem
        self.layout = layout
        super().__init__(
            f"dataset {name!r} is unavailable: {problem} (searched {self.path}). Expected: {layout}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str]]:
        # Rebuild from the four fields (the default would call __init__ with the message alone), so the
        # error survives pickling between processes.
        return (type(self), (self.name, self.path, self.problem, self.layout))


_CIFAR10_MEAN = _per_255((125.3, 123.0, 113.9))
_CIFAR10_STD = _per_255((63.0, 62.1, 66.7))

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="synthetic_cifar10",
            summary="FEAR's synthetic CIFAR-10 replacement: N(0,1) 3x32x32 images labelled by the argmax "
            "of 10 random two-layer nets; generated on first use and cached",
            num_classes=10,
            input_size=32,
            train_size=50_000,
            test_size=10_000,
            mean=None,
            std=None,
            crop_padding=0,
            flip=False,
            source="generated",
            folder=None,
            required=(),
            layout="nothing: generated from its options (per_class, train_per_class, draw_budget, seed) "
            "and cached under <data_dir>/cache/synthetic/",
        ),
        DatasetInfo(
            name="cifar10",
            summary="CIFAR-10 from torchvision's python-pickle folder",
            num_classes=10,
            input_size=32,
            train_size=50_000,
            test_size=10_000,
            mean=_CIFAR10_MEAN,
            std=_CIFAR10_STD,
            crop_padding=4,
            flip=True,
            source="pickle",
            folder="cifar-10-batches-py",
            required=(*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
            layout="<datasets_dir>/cifar-10-batches-py/ with data_batch_1..5 and test_batch: Python "
            "pickles of dicts with 'data' (uint8 N x 3072, channel planes R,G,B of 32x32) and 'labels' (0-9)",
        ),
        DatasetInfo(
            name="cifar100",
            summary="CIFAR-100 (fine labels) from torchvision's python-pickle folder",
            num_classes=100,
            input_size=32,
            train_size=50_000,
            test_size=10_000,
            mean=_per_255((129.3, 124.1, 112.4)),
            std=_per_255((68.2, 65.4, 70.4)),
            crop_padding=4,
            flip=True,
            source="pickle",
            folder="cifar-100-python",
            required=("train", "test"),
            layout="<datasets_dir>/cifar-100-python/ with train and test: Python pickles of dicts with "
            "'data' (uint8 N x 3072, channel planes R,G,B of 32x32) and 'fine_labels' (0-99)",
            split_file="cifar100-test-split.txt",
        ),
        DatasetInfo(
            name="imagenet16_120",
            summary="ImageNet16-120: 16x16 downsampled ImageNet, classes 1..120 of 1000 (NAS-Bench-201)",
            num_classes=120,
            input_size=16,
            train_size=151_700,
            test_size=6_000,
            mean=_per_255((122.68, 116.66, 104.01)),
            std=_per_255((63.22, 61.26, 65.09)),
            crop_padding=2,
            flip=True,
            source="pickle",
            folder="ImageNet16",
            required=(*(f"train_data_batch_{i}" for i in range(1, 11)), "val_data"),
            layout="<datasets_dir>/ImageNet16/ with train_data_batch_1..10 and val_data: Python pickles "
            "of dicts with 'data' (uint8 N x 768, channel planes of 16x16) and 'labels' (1-based, 1..1000)",
            split_file="imagenet-16-120-test-split.txt",
        ),
        DatasetInfo(
            name="cifar10_folder",
            summary="CIFAR-10 as an image folder (PNG/JPEG files), decoded once and cached",
            num_classes=10,
            input_size=32,
            train_size=50_000,
            test_size=10_000,
            mean=_CIFAR10_MEAN,
            std=_CIFAR10_STD,
            crop_padding=4,
            flip=True,
            source="image_folder",
            folder="cifar10-jpg",
            required=("train/", "test/"),
            layout="<datasets_dir>/cifar10-jpg/train/<class>/*.png|jpg and "
            "<datasets_dir>/cifar10-jpg/test/<class>/..., 32x32 RGB images; class indices follow the sorted "
            "class folder names of train/",
        ),
    )
}


def get_dataset(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def dataset_path(name: str, data_dir: Path | str, cache_dir: Path | str | None = None) -> Path:
    """Where the dataset's files live (synthetic: its cache folder, ``cache_dir`` or else
    ``data_dir/cache``)."""
    info = get_dataset(name)
    if info.folder is None:
        return Path(cache_dir if cache_dir is not None else Path(data_dir) / "cache") / "synthetic"
    return Path(data_dir) / info.folder


def _is_present(path: Path, entry: str) -> bool:
    if entry.endswith("/"):
        # An image-folder split counts as present when it holds at least one class folder.
        folder = path / entry.rstrip("/")
        return folder.is_dir() and any(child.is_dir() for child in folder.iterdir())
    return (path / entry).is_file()


CACHE_KINDS = ("synthetic", "image_folder")


def adopt_legacy_cache(datasets_dir: Path | str, cache_dir: Path | str) -> str | None:
    """Move caches from where releases before 2026-12-03 wrote them (``<datasets_dir>/cache``, which
    broke read-only dataset mounts) to ``cache_dir``, once, so nothing is regenerated (a synthetic
    set can take half an hour on a CPU). Returns what it did or why it could not, for the log."""
    legacy, target = Path(datasets_dir) / "cache", Path(cache_dir)
    if not legacy.is_dir() or legacy.resolve() == target.resolve():
        return None
    notes = []
    for kind in CACHE_KINDS:
        src, dst = legacy / kind, target / kind
        if not src.is_dir() or dst.exists():
            continue
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dst)  # a rename, or a copy when the folders are on two file systems
        except OSError as exc:
            if dst.exists() or not src.exists():
                continue  # a sibling worker (another slot, another container) moved it first
            notes.append(f"{src} was not moved to {dst} ({exc}): move it by hand or it is regenerated")
            continue
        notes.append(f"moved {src} to {dst}")
    return "dataset cache: " + "; ".join(notes) if notes else None


def availability(name: str, data_dir: Path | str, cache_dir: Path | str | None = None) -> dict[str, Any]:
    """Whether the dataset's files exist (no parsing): ``{"present", "path", "missing"}``."""
    info = get_dataset(name)
    path = dataset_path(name, data_dir, cache_dir)
    missing = [entry for entry in info.required if not _is_present(path, entry)]
    return {"present": not missing, "path": str(path), "missing": missing}


def require_available(name: str, data_dir: Path | str) -> Path:
    """The dataset's folder, or ``DatasetUnavailable`` listing what is missing there."""
    state = availability(name, data_dir)
    if not state["present"]:
        raise DatasetUnavailable(
            name, state["path"], f"missing {', '.join(state['missing'])}", get_dataset(name).layout
        )
    return Path(state["path"])


@dataclass(frozen=True)
class SplitHalves:
    """The two halves of a test split, as listed in the benchmark's split file."""

    path: Path
    x_valid: tuple[int, ...]
    x_test: tuple[int, ...]

    def half(self, split: HeldOutSplit) -> tuple[int, ...]:
        if split == "x-valid":
            return self.x_valid
        if split == "x-test":
            return self.x_test
        raise ValueError(f"{split!r} is not a half of the test split; use 'x-valid' or 'x-test'")


def split_file_path(name: str, data_dir: Path | str) -> Path:
    """Where the dataset's x-valid/x-test index file must be; ValueError if it has no official split."""
    info = get_dataset(name)
    if info.split_file is None:
        raise ValueError(
            f"dataset {name!r} has no official x-valid/x-test split (only cifar100 and imagenet16_120 do)"
        )
    return Path(data_dir) / info.split_file


def _index_list(raw: object) -> list[int] | None:
    # NAS-Bench-201 stores every config value as a typed pair [type name, value]; a bare list is also
    # accepted. Its loader converts each element with int(), so numeric strings are accepted too.
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str) and isinstance(raw[1], list):
        if raw[0] != "int":
            return None
        raw = raw[1]
    if not isinstance(raw, list):
        return None
    out: list[int] = []
    for item in raw:
        if isinstance(item, bool):
            return None
        if isinstance(item, int):
            out.append(item)
        elif isinstance(item, str) and item.strip().isdigit():
            out.append(int(item))
        else:
            return None
    return out


def read_split_file(name: str, data_dir: Path | str, test_total: int | None = None) -> SplitHalves:
    """Parse and check the dataset's split file: both halves present, disjoint, in range and, given
    ``test_total`` (the loaded test split's size), covering it. Any problem is ``DatasetUnavailable``
    naming the file, since only the operator can fix it.

    The file is small (tens of kB): the API reads it at submission without ``test_total`` (it never
    parses the dataset itself, so indices are bounded by the catalogue's split size and coverage is
    not checked) and the worker reads it again at load with the real size.
    """
    info = get_dataset(name)
    bound = info.test_size if test_total is None else test_total
    path = split_file_path(name, data_dir)
    expected = f"{path.name} from NAS-Bench-201 in {Path(data_dir)}: {SPLIT_FILE_FORMAT}"

    def fail(problem: str) -> DatasetUnavailable:
        return DatasetUnavailable(name, path, problem, expected)

    if not path.is_file():
        raise fail(f"missing split file {path.name}")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise fail(f"{path.name} is not readable JSON ({type(error).__name__}: {error})") from error
    if not isinstance(content, dict):
        raise fail(f"{path.name} holds a {type(content).__name__}, not an object with 'xvalid' and 'xtest'")
    halves: dict[str, list[int]] = {}
    for key in ("xvalid", "xtest"):
        if key not in content:
            raise fail(f"{path.name} lacks key {key!r} (has {sorted(map(str, content))})")
        indices = _index_list(content[key])
        if indices is None:
            raise fail(f"{path.name}: {key!r} is not a list of integer indices")
        out_of_range = [i for i in indices if not 0 <= i < bound]
        if out_of_range:
            raise fail(
                f"{path.name}: {key!r} holds index {out_of_range[0]} outside 0..{bound - 1}, the test "
                f"split's indices ({len(out_of_range)} out of range)"
            )
        if len(set(indices)) != len(indices):
            raise fail(f"{path.name}: {key!r} lists an index more than once")
        halves[key] = indices
    shared = set(halves["xvalid"]) & set(halves["xtest"])
    if shared:
        raise fail(f"{path.name}: 'xvalid' and 'xtest' share {len(shared)} indices (e.g. {min(shared)})")
    covered = len(halves["xvalid"]) + len(halves["xtest"])
    if test_total is not None and covered != test_total:
        raise fail(
            f"{path.name}: 'xvalid' and 'xtest' cover {covered} of the {test_total} test images; "
            "together they must cover all of them"
        )
    return SplitHalves(path, tuple(halves["xvalid"]), tuple(halves["xtest"]))


def describe(name: str, data_dir: Path | str, cache_dir: Path | str | None = None) -> dict[str, Any]:
    """One entry of GET /v1/datasets: the catalogue facts plus availability under ``data_dir``."""
    return {**get_dataset(name).as_dict(), "availability": availability(name, data_dir, cache_dir)}
