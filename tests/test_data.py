import struct

import numpy as np
import pytest
import torch

import pyrovae
from pyrovae.errors import DataError, SpecError


def test_digits_split_is_fixed_and_scaled(digits):
    assert digits.train.shape == (1438, 1, 8, 8) and digits.test.shape == (359, 1, 8, 8)
    assert digits.train.dtype == torch.float32
    assert 0 <= digits.train.min() and digits.train.max() == 1
    again = pyrovae.data.digits()
    assert torch.equal(again.test, digits.test) and torch.equal(again.test_labels, digits.test_labels)
    other = pyrovae.data.digits(split_seed=1)
    assert not torch.equal(other.test, digits.test)
    assert sorted(digits.test_labels.unique().tolist()) == list(range(10))


def test_digits_binarize():
    b = pyrovae.data.digits(binarize=True)
    assert set(b.train.unique().tolist()) == {0.0, 1.0}


def _write_idx(path, array: np.ndarray):
    """The IDX format of the MNIST files: magic (0, 0, dtype 0x08, ndim), big-endian dims, bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(data)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_sets_read_real_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.RandomState(0)
    imgs = {"train": rng.randint(0, 256, (12, 28, 28)), "t10k": rng.randint(0, 256, (5, 28, 28))}
    labels = {"train": rng.randint(0, 10, 12), "t10k": rng.randint(0, 10, 5)}
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", imgs[split])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels[split])
    d = pyrovae.data.load(name, {"root": str(tmp_path), "download": False})
    assert d.train.shape == (12, 1, 28, 28) and d.test.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(d.train[:, 0].numpy(), imgs["train"] / 255.0, rtol=1e-6)
    assert d.test_labels.tolist() == labels["t10k"].tolist()
    vae = pyrovae.build({"data": {"name": name, "root": str(tmp_path), "download": False},
                         "model": {"encoder": "conv", "decoder": "conv", "latent_dim": 2}})
    hist = pyrovae.fit(vae, d, epochs=1, batch_size=4, progress=False)
    assert np.isfinite(hist[0]["test_elbo"])


def test_missing_torchvision_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError) as e:
        pyrovae.data.load("mnist", {"root": str(tmp_path), "download": False})
    assert str(tmp_path / "MNIST" / "raw") in str(e.value)


def test_npy_and_npz_arrays(tmp_path):
    x = np.random.RandomState(0).rand(40, 6).astype(np.float64)
    np.save(tmp_path / "a.npy", x)
    d = pyrovae.data.load("array", {"path": str(tmp_path / "a.npy")})
    assert d.train.shape == (32, 6) and d.test.shape == (8, 6) and d.train.dtype == torch.float32
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(40) % 3)
    np.savez(tmp_path / "c.npz", x=x[:5], y=np.arange(5) % 3)
    d = pyrovae.data.load("array", {"path": str(tmp_path / "b.npz"),
                                    "test_path": str(tmp_path / "c.npz")})
    assert d.train.shape == (40, 6) and d.test.shape == (5, 6)
    assert d.train_labels.tolist() == (np.arange(40) % 3).tolist()
    vae = pyrovae.build({"data": {"name": "array", "path": str(tmp_path / "b.npz")},
                         "model": {"likelihood": "normal"}})
    assert vae.data_shape == (6,)


def test_bad_array_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        pyrovae.data.load("array", {"path": str(tmp_path / "nope.npy")})
    np.savez(tmp_path / "b.npz", images=np.zeros((4, 2)))
    with pytest.raises(DataError, match="images"):
        pyrovae.data.load("array", {"path": str(tmp_path / "b.npz")})
    with pytest.raises(SpecError) as e:
        pyrovae.data.load("array", {})
    assert "path" in str(e.value)


def test_data_outside_the_likelihood_support_is_rejected_before_training(tmp_path):
    x = np.random.RandomState(0).randn(30, 4).astype(np.float32)  # negative values
    np.save(tmp_path / "a.npy", x)
    spec = {"data": {"name": "array", "path": str(tmp_path / "a.npy")}}
    with pytest.raises(DataError) as e:
        pyrovae.build(spec)  # default likelihood: bernoulli
    assert "bernoulli" in str(e.value) and "[0, 1]" in str(e.value)
    x[3, 1] = np.nan
    np.save(tmp_path / "a.npy", x)
    with pytest.raises(DataError, match="finite"):
        pyrovae.build({**spec, "model": {"likelihood": "normal"}})
