"""Data sets: the embedded digits default, torchvision image sets, user arrays.

Every loader returns a :class:`Data` with train/test tensors shaped
``(N, *example_shape)`` (images as ``(C, H, W)``) and optional integer labels. The
examples are float32, or stored compactly as integers (uint8 pixels of a large image
set) that :meth:`Data.examples` turns into floats a batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .registry import Registry

registry = Registry("data set")
register = registry.register


@dataclass
class Data:
    """Train and test examples with optional labels.

    ``train``/``test`` hold float32 examples, or integers (e.g. uint8) whose example
    values are ``stored * value_scale``; read batches through :meth:`examples`.
    ``ground_truth``: the generating factors' data set (:mod:`pyrovae.groundtruth`)
    when the examples come from one, for the disentanglement metrics.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    value_scale: float = 1.0
    ground_truth: Any = None

    def examples(self, stored: torch.Tensor) -> torch.Tensor:
        """Float32 examples from stored rows (a batch of ``train`` or ``test``)."""
        if stored.is_floating_point():
            return stored if stored.dtype == torch.float32 else stored.float()
        x = stored.float()
        return x.mul_(self.value_scale) if self.value_scale != 1.0 else x

    def split(self, name: str) -> torch.Tensor:
        """The whole ``train`` or ``test`` split as float32 examples."""
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {name!r}")
        return self.examples(getattr(self, name))

    def distinct_values(self, name: str) -> torch.Tensor:
        """The example values a split contains: itself when stored as floats, else its
        distinct stored integers as floats (cheap to check against a likelihood's support)."""
        stored = getattr(self, name)
        if stored.is_floating_point():
            return stored
        if stored.dtype == torch.uint8:  # torch.unique sorts (~20 bytes per element); 256 bins do
            present = torch.bincount(stored.reshape(-1), minlength=256).nonzero().flatten()
            return self.examples(present.to(torch.uint8))
        return self.examples(torch.unique(stored))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.train.shape[1:])

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3 and self.shape[0] in (1, 3)

    def to(self, device) -> Data:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, train=move(self.train), test=move(self.test),
                       train_labels=move(self.train_labels), test_labels=move(self.test_labels))


def load(name: str, options: dict | None = None, key: str = "data") -> Data:
    """Load the registered data set ``name`` with ``options``."""
    return registry.build(name, options or {}, key)


def split(x: np.ndarray, labels, test_fraction: float, seed: int):
    """A fixed, seeded train/test split."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    perm = np.random.RandomState(seed).permutation(len(x))
    n_test = max(1, int(round(test_fraction * len(x))))
    test, train = perm[:n_test], perm[n_test:]
    if len(train) == 0:
        raise ValueError(f"test_fraction {test_fraction} leaves no training examples")
    lab = (lambda idx: None) if labels is None else (lambda idx: torch.as_tensor(labels[idx]))
    return torch.as_tensor(x[train]), torch.as_tensor(x[test]), lab(train), lab(test)


def _binarize(x: torch.Tensor, binarize: bool) -> torch.Tensor:
    if not isinstance(binarize, bool):
        raise ValueError(f"binarize must be true or false, got {binarize!r}")
    return (x > 0.5).to(x.dtype) if binarize else x


@register("digits")
def digits(*, binarize: bool = False, test_fraction: float = 0.2, split_seed: int = 0) -> Data:
    """scikit-learn's 8x8 handwritten digits (1797 images, 1x8x8, scaled to [0,1]); offline."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    tr, te, ytr, yte = split(x, d.target.astype(np.int64), test_fraction, split_seed)
    return Data("digits", _binarize(tr, binarize), _binarize(te, binarize), ytr, yte)


def _torchvision(cls_name: str, root, download: bool, binarize: bool) -> Data:
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    root = Path(root).expanduser()
    try:
        sets = [cls(str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True"
        raise DataError(
            f"data: {cls_name} not found under {str(root)!r} (download={download}). "
            f"Put the four IDX files in {str(root / cls_name / 'raw')!r} or set data.download=true "
            f"where the network allows. ({e})") from e
    except OSError as e:
        raise DataError(f"data: could not download {cls_name} to {str(root)!r}: {e}") from e
    xs = [_binarize(s.data.to(torch.float32).div_(255.0)[:, None], binarize) for s in sets]
    ys = [s.targets.to(torch.int64) for s in sets]
    return Data(cls_name.lower(), xs[0], xs[1], ys[0], ys[1])


@register("mnist")
def mnist(*, root: str = "~/.cache/pyrovae", download: bool = True, binarize: bool = False) -> Data:
    """MNIST through torchvision (60000/10000 images, 1x28x28 in [0,1])."""
    return _torchvision("MNIST", root, download, binarize)


@register("fashion_mnist")
def fashion_mnist(*, root: str = "~/.cache/pyrovae", download: bool = True,
                  binarize: bool = False) -> Data:
    """Fashion-MNIST through torchvision (60000/10000 images, 1x28x28 in [0,1])."""
    return _torchvision("FashionMNIST", root, download, binarize)


@register("array")
def array(*, path: str, test_path: str | None = None, key: str = "x", label_key: str = "y",
          test_fraction: float = 0.2, split_seed: int = 0) -> Data:
    """Your own examples from .npy/.npz, shaped (N, ...); labels from ``label_key`` in .npz.

    With ``test_path`` that file is the test set; otherwise a seeded ``test_fraction`` split.
    """
    x, y = _read_array(path, key, label_key)
    if test_path is None:
        tr, te, ytr, yte = split(x, y, test_fraction, split_seed)
    else:
        xt, yt = _read_array(test_path, key, label_key)
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"data: test examples have shape {xt.shape[1:]}, train {x.shape[1:]}")
        tr, te = torch.as_tensor(x), torch.as_tensor(xt)
        ytr = None if y is None else torch.as_tensor(y)
        yte = None if yt is None else torch.as_tensor(yt)
    return Data(Path(path).stem, tr, te, ytr, yte)


def _read_array(path: str, key: str, label_key: str):
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data.path: file {str(p)!r} does not exist")
    try:
        if p.suffix == ".npz":
            with np.load(p) as f:
                if key not in f:
                    raise DataError(f"data.key: {str(p)!r} has no array {key!r} "
                                    f"(valid choices: {', '.join(f.files)})")
                x, y = f[key], (f[label_key] if label_key in f else None)
        elif p.suffix == ".npy":
            x, y = np.load(p), None
        else:
            raise DataError(f"data.path: {str(p)!r} must be a .npy or .npz file")
    except (ValueError, OSError) as e:
        raise DataError(f"data.path: cannot read {str(p)!r}: {e}") from e
    if x.ndim < 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"data.path: {str(p)!r} must hold a numeric array shaped (N, ...), "
                        f"got dtype {x.dtype} and shape {x.shape}")
    if y is not None and len(y) != len(x):
        raise DataError(f"data.label_key: {len(y)} labels for {len(x)} examples in {str(p)!r}")
    return x.astype(np.float32), (None if y is None else y.astype(np.int64))
