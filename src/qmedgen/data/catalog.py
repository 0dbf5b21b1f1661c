"""Facts about the 12 MedMNIST v2/v3 2D datasets: classes, task, channels, split sizes, official MD5s and URLs.

The MD5 values, split sizes, class names and licences are facts published with MedMNIST (the table in the
``medmnist`` 3.0.2 package, ``info.py``; Yang et al., "MedMNIST v2", Scientific Data 10, 41 (2023)). They are kept
here in our own format so that qmedgen needs neither the ``medmnist`` package nor torchvision.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmedgen.errors import DataError

MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
#: Image sides the generators produce (MedMNIST's 28, 64, 128, and 32 for power-of-two architectures).
GENERATED_SIZES: tuple[int, ...] = (28, 32, 64, 128)
ZENODO_RECORD = "https://zenodo.org/records/10519652/files"
MEDMNIST_CITATION = (
    "Jiancheng Yang, Rui Shi, Donglai Wei, Zequan Liu, Lin Zhao, Bilian Ke, Hanspeter Pfister, Bingbing Ni. "
    "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical image classification. "
    "Scientific Data 10, 41 (2023)."
)

#: Task names used throughout qmedgen.
TASKS = ("multi-class", "ordinal-regression", "multi-label", "binary-class")


@dataclass(frozen=True)
class MedMNISTSpec:
    """One MedMNIST 2D dataset: everything needed to find, verify and describe its files."""

    name: str
    task: str
    n_channels: int
    class_names: tuple[str, ...]
    n_samples: dict[str, int]
    md5: dict[int, str]  # image size -> official MD5 of the .npz file
    license: str

    def filename(self, size: int = 28) -> str:
        """Official file name: ``retinamnist.npz`` for 28x28, ``retinamnist_64.npz`` otherwise."""
        check_medmnist_size(self.name, size)
        return f"{self.name}.npz" if size == 28 else f"{self.name}_{size}.npz"

    def url(self, size: int = 28) -> str:
        """Official download address (Zenodo record of MedMNIST v3)."""
        return f"{ZENODO_RECORD}/{self.filename(size)}?download=1"

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _spec(name, task, n_channels, classes, train, val, test, md5s, license="CC BY 4.0") -> MedMNISTSpec:
    return MedMNISTSpec(
        name=name,
        task=task,
        n_channels=n_channels,
        class_names=tuple(classes),
        n_samples={"train": train, "val": val, "test": test},
        md5=dict(zip(MEDMNIST_SIZES, md5s.split())),
        license=license,
    )


_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
           "lung-right", "pancreas", "spleen")

MEDMNIST: dict[str, MedMNISTSpec] = {s.name: s for s in (
    _spec("pathmnist", "multi-class", 3,
          ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
           "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
          89996, 10004, 7180,
          "a8b06965200029087d5bd730944a56c1 55aa9c1e0525abe5a6b9d8343a507616 "
          "ac42d08fb904d92c244187169d1fd1d9 2c51a510bcdc9cf8ddb2af93af1eadec"),
    _spec("chestmnist", "multi-label", 1,
          ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia", "pneumothorax",
           "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"),
          78468, 11219, 22433,
          "02c8a6516a18b556561a56cbdd36c4a8 9de6cd0b934ebb5b7426cfba5efbae16 "
          "db107e5590b27930b62dbaf558aebee3 45bd33e6f06c3e8cdb481c74a89152aa"),
    _spec("dermamnist", "multi-class", 3,
          ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions",
           "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"),
          7007, 1003, 2005,
          "0744692d530f8e62ec473284d019b0c7 b70a2f5635c6199aeaa28c31d7202e1f "
          "2defd784463fa5243564e855ed717de1 8974907d8e169bef5f5b96bc506ae45d",
          license="CC BY-NC 4.0"),
    _spec("octmnist", "multi-class", 1,
          ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
          97477, 10832, 1000,
          "c68d92d5b585d8d81f7112f81e2d0842 e229e9440236b774d9f0dfef9d07bdaf "
          "0a97e76651ace45c5d943ee3f65b63ae abc493b6d529d5de7569faaef2773ba3"),
    _spec("pneumoniamnist", "binary-class", 1, ("normal", "pneumonia"),
          4708, 524, 624,
          "28209eda62fecd6e6a2d98b1501bb15f 8f4eceb4ccffa70c672198ea285246c6 "
          "05b46931834c231683c68f40c47b2971 d6a3c71de1b945ea11211b03746c1fe1"),
    _spec("retinamnist", "ordinal-regression", 3, ("0", "1", "2", "3", "4"),
          1080, 120, 400,
          "bd4c0672f1bba3e3a89f0e4e876791e4 afda852cc34dcda56f86ad2b2457dbcc "
          "e48e916a24454daf90583d4e6efb1a18 eae7e3b6f3fcbda4ae613ebdcbe35348"),
    _spec("breastmnist", "binary-class", 1, ("malignant", "normal, benign"),
          546, 78, 156,
          "750601b1f35ba3300ea97c75c52ff8f6 742edef2a1fd1524b2efff4bd7ba9364 "
          "363e4b3f8d712e9b5de15470a2aaadf1 b56378a6eefa9fed602bb16d192d4c8b"),
    _spec("bloodmnist", "multi-class", 3,
          ("basophil", "eosinophil", "erythroblast",
           "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
           "neutrophil", "platelet"),
          11959, 1712, 3421,
          "7053d0359d879ad8a5505303e11de1dc 2b94928a2ae4916078ca51e05b6b800b "
          "adace1e0ed228fccda1f39692059dd4c b718ff6835fcbdb22ba9eacccd7b2601"),
    _spec("tissuemnist", "multi-class", 1,
          ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
           "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
           "Thick Ascending Limb"),
          165466, 23640, 47280,
          "ebe78ee8b05294063de985d821c1c34b 123ece2eba09d0aa5d698fda57103344 "
          "61b955355d7425a89687b06cca3ce0c2 b077128c4a949f0a4eb01517f9037b9c"),
    _spec("organamnist", "multi-class", 1, _ORGANS,
          34561, 6491, 17778,
          "68e3f8846a6bd62f0c9bf841c0d9eacc 2dcccc29b88e6da5a01161ef20cda288 "
          "eeae80d0a227a8d099027e1b3cfd3b60 50747347e05c87dd3aaf92c49f9f3170"),
    _spec("organcmnist", "multi-class", 1, _ORGANS,
          12975, 2392, 8216,
          "b9ceb9546e10131b32923c5bbeaea2b1 3ce34a8724ea6f548e6db4744d03b6a9 "
          "773c1f009daa3fe5d9a2a201b2a7ed94 050f5e875dc056f6768abf94ec9995d1"),
    _spec("organsmnist", "multi-class", 1, _ORGANS,
          13932, 2452, 8827,
          "9ab87b696fb54e2a387ebe992d6ed5f1 53a6d115339d874c25e309a994ff46d3 "
          "ded0c5fa01a95dc4978b956f613e9b8e b354719e553fbbb2513d5533f52a4cb1"),
)}


def check_medmnist_size(name: str, size: int) -> None:
    if size not in MEDMNIST_SIZES:
        raise DataError(
            f"{name}: size {size} is not an official MedMNIST size; expected one of {list(MEDMNIST_SIZES)} "
            f"(resize afterwards with qmedgen.data.transforms.resize_images if you need another size)"
        )


def medmnist_spec(name: str) -> MedMNISTSpec:
    """The spec of a MedMNIST 2D dataset by (case-insensitive) name, with a suggestion when the name is unknown."""
    key = name.lower()
    if key in MEDMNIST:
        return MEDMNIST[key]
    import difflib

    close = difflib.get_close_matches(key, list(MEDMNIST), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise DataError(f"unknown MedMNIST dataset {name!r}; known: {', '.join(MEDMNIST)}.{hint}")


# MNIST (LeCun, Cortes, Burges): official file names, sizes and MD5s. The .gz MD5s are torchvision's published
# values; the uncompressed MD5s identify the same content when the gzip container differs (see SOURCES.md).
MNIST_FILES: dict[str, dict[str, object]] = {
    "train-images": {"stem": "train-images-idx3-ubyte", "n": 60000, "gz_md5": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                     "raw_md5": "6bbc9ace898e44ae57da46a324031adb"},
    "train-labels": {"stem": "train-labels-idx1-ubyte", "n": 60000, "gz_md5": "d53e105ee54ea40749a09fcbcd1e9432",
                     "raw_md5": "a25bea736e30d166cdddb491f175f624"},
    "test-images": {"stem": "t10k-images-idx3-ubyte", "n": 10000, "gz_md5": "9fb629c4189551a2d022fa330f9573f3",
                    "raw_md5": "2646ac647ad5339dbf082846283269ea"},
    "test-labels": {"stem": "t10k-labels-idx1-ubyte", "n": 10000, "gz_md5": "ec29112dd5afa0611ce80d1b7f02629c",
                    "raw_md5": "27ae3e4e09519cfbb04c329615203637"},
}


# ------------------------------------------------------------------------------------- label-preserving augmentation

#: Augmentations a classifier may use on each dataset without changing the label. Ops: ``crop`` (random
#: translation), ``hflip``/``vflip`` (mirror left-right / top-bottom), ``rot90`` (multiples of 90 degrees),
#: ``rotate`` (small rotations, +-15 degrees), ``color`` (brightness/contrast/saturation jitter, RGB only).
#: Why each entry: a mirror swaps left and right, so no horizontal flip where laterality is the label (the organ
#: sets: femur/kidney/lung left vs right) or where anatomy has a side (chest X-rays: the heart); no vertical flip
#: where depth or gravity has a direction (OCT and ultrasound B-scans, CT slices, X-rays, digits); rot90 only where
#: the content has no orientation (cells, tissue patches, skin lesions); colour only where stain or camera colour
#: varies between sites and is not itself the finding's only cue.
LABEL_PRESERVING: dict[str, tuple[str, ...]] = {
    "pathmnist": ("crop", "hflip", "vflip", "rot90", "rotate", "color"),
    "chestmnist": ("crop", "rotate"),
    "dermamnist": ("crop", "hflip", "vflip", "rot90", "rotate", "color"),
    "octmnist": ("crop", "hflip", "rotate"),
    "pneumoniamnist": ("crop", "rotate"),
    "retinamnist": ("crop", "hflip", "vflip", "rotate", "color"),
    "breastmnist": ("crop", "hflip", "rotate"),
    "bloodmnist": ("crop", "hflip", "vflip", "rot90", "rotate", "color"),
    "tissuemnist": ("crop", "hflip", "vflip", "rot90", "rotate"),
    "organamnist": ("crop", "rotate"),
    "organcmnist": ("crop", "rotate"),
    "organsmnist": ("crop", "rotate"),
    "mnist": ("crop", "rotate"),
}
#: For a dataset qmedgen knows nothing about (``folder:PATH``): only what cannot swap a label in any domain.
UNKNOWN_DATASET_OPS: tuple[str, ...] = ("crop", "rotate")
AUGMENT_OPS: tuple[str, ...] = ("crop", "hflip", "vflip", "rot90", "rotate", "color")


def label_preserving_ops(dataset: str, channels: int = 3) -> tuple[str, ...]:
    """The augmentations allowed on ``dataset`` (``embedded-X`` and ``X:...`` resolve to X); colour needs RGB."""
    key = dataset.lower().split(":")[0].removeprefix("embedded-")
    ops = LABEL_PRESERVING.get(key, UNKNOWN_DATASET_OPS)
    return tuple(op for op in ops if op != "color" or channels == 3)
