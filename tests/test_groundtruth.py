import math

import h5py
import numpy as np
import pytest
import torch

import pyrovae
import pyrovae.groundtruth as gt
from pyrovae.errors import DataError, SpecError
from pyrovae.groundtruth import files, official

# --- the factor grid ----------------------------------------------------------------------


def test_flat_index_is_numpys_row_major_index_and_round_trips():
    grid = gt.FactorGrid([3, 6, 40, 32, 32])
    assert grid.total == 737_280
    f = grid.sample(1000, np.random.RandomState(0))
    np.testing.assert_array_equal(grid.index(f), np.ravel_multi_index(f.T, grid.sizes))
    np.testing.assert_array_equal(grid.factors(grid.index(f)), f)
    every = np.arange(grid.total)
    np.testing.assert_array_equal(grid.index(grid.factors(every)), every)


def test_dsprites_grid_matches_disentanglement_lib():
    d = gt.Sprites("dsprites")
    assert d.num_factors == 5 and d.factors_num_values == [3, 6, 40, 32, 32]
    assert d.grid.total == 737_280 and d.observation_shape == (64, 64, 1) and d.image_shape == (1, 64, 64)
    np.testing.assert_allclose(d.factor_values[1], np.linspace(0.5, 1, 6))
    np.testing.assert_allclose(d.factor_values[2], 2 * np.pi * np.arange(40) / 40)
    np.testing.assert_allclose(d.factor_values[3], np.linspace(0, 1, 32))


def test_out_of_grid_factors_are_data_errors():
    grid = gt.FactorGrid([3, 4])
    with pytest.raises(DataError, match=r"factor 1 has index 4 in row 1; valid indices are 0..3"):
        grid.index([[0, 0], [1, 4]])
    with pytest.raises(DataError, match=r"shaped \(num, 2\)"):
        grid.index(np.zeros((5, 3), dtype=int))
    with pytest.raises(DataError, match="integer"):
        grid.index([[0.5, 1.0]])


def test_uniform_sampling_covers_every_value_at_the_right_rate():
    d = gt.Sprites("s", 32, 3, 3, 8, 8)
    n = 40_000
    f = d.sample_factors(n, np.random.RandomState(1))
    assert f.dtype == np.int64 and f.shape == (n, 5)
    for col, size in enumerate(d.factors_num_values):
        counts = np.bincount(f[:, col], minlength=size)
        p = 1 / size
        se = math.sqrt(n * p * (1 - p))  # binomial standard error of each count
        assert counts.min() > 0 and np.abs(counts - n * p).max() < 5 * se
    # disentanglement_lib's order of draws: one randint column per factor
    rs = np.random.RandomState(7)
    expected = np.stack([rs.randint(s, size=10) for s in d.factors_num_values], axis=1)
    np.testing.assert_array_equal(d.sample_factors(10, np.random.RandomState(7)), expected)
    assert d.sample_factors(5, np.random.default_rng(0)).shape == (5, 5)


# --- the procedural renderer --------------------------------------------------------------

@pytest.fixture(scope="module")
def sprites():
    return gt.Sprites("dsprites")


def _images(d, rows):
    return d.observations_chw(np.asarray(rows))[:, 0]


def test_rendering_is_deterministic_binary_and_inside_the_frame(sprites):
    f = sprites.sample_factors(300, np.random.RandomState(0))
    a = sprites.images(sprites.grid.index(f))
    b = gt.Sprites("dsprites").images(sprites.grid.index(f))
    assert a.dtype == np.uint8 and a.shape == (300, 1, 64, 64)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0, 1} and a.sum(axis=(1, 2, 3)).min() > 0
    # the largest sprites at the extreme positions never touch the border
    corners = [[s, 5, o, x, y] for s in range(3) for o in range(0, 40, 5) for x in (0, 31) for y in (0, 31)]
    edge = _images(sprites, corners)
    assert edge[:, [0, -1], :].sum() == 0 and edge[:, :, [0, -1]].sum() == 0


def test_one_position_step_shifts_the_image_by_whole_pixels(sprites):
    step = sprites.renderer.step
    assert step == 1
    for shape in range(3):
        row = [[shape, 3, 7, x, 12] for x in range(32)]
        x = _images(sprites, row)
        np.testing.assert_array_equal(x[1:], np.roll(x[:-1], step, axis=-1))  # exact translation
        com_x = (x * np.arange(64)).sum(axis=(1, 2)) / x.sum(axis=(1, 2))
        np.testing.assert_allclose(np.diff(com_x), step)  # monotone: one step per index
        col = _images(sprites, [[shape, 3, 7, 12, y] for y in range(32)])
        com_y = (col * np.arange(64)[:, None]).sum(axis=(1, 2)) / col.sum(axis=(1, 2))
        np.testing.assert_allclose(np.diff(com_y), step)  # y increases downwards, like rows


def test_area_grows_with_scale_as_the_shape_formulas_say(sprites):
    r = sprites.renderer.radius * sprites.factor_values[1]  # sprite radius in pixels
    exact = {0: 2 * r ** 2, 1: math.pi * r ** 2 / 2}  # square (side sqrt2 r), ellipse (r x r/2)
    for shape in range(3):
        area = _images(sprites, [[shape, s, 0, 16, 16] for s in range(6)]).sum(axis=(1, 2))
        assert np.all(np.diff(area) > 0)
        if shape in exact:  # a pixel-centre count errs by at most about the perimeter in pixels
            assert np.all(np.abs(area - exact[shape]) <= 4 * math.sqrt(2) * r + 4)
    # an upright square centred on a pixel centre covers the pixels |dx|, |dy| <= r / sqrt 2
    upright = _images(sprites, [[0, s, 0, 16, 16] for s in range(6)]).sum(axis=(1, 2))
    np.testing.assert_array_equal(upright, (2 * np.floor(r / math.sqrt(2)) + 1) ** 2)


def test_rotations_by_symmetries_give_the_same_image(sprites):
    # 40 orientations: index 10 is 90 degrees, 20 is 180
    for o in (0, 3, 7):
        sq = _images(sprites, [[0, 4, o, 9, 20], [0, 4, o + 10, 9, 20]])
        assert np.abs(sq[0] - sq[1]).sum() <= 2
        el = _images(sprites, [[1, 4, o, 9, 20], [1, 4, o + 20, 9, 20]])
        assert np.abs(el[0] - el[1]).sum() <= 2
    # a heart turned 180 degrees is the point reflection about its centre, pixel (row 32, col 32)
    h = _images(sprites, [[2, 5, 0, 16, 16], [2, 5, 20, 16, 16]])
    assert not np.array_equal(h[0], h[1])
    reflected = np.rot90(h[0][1:, 1:], 2)  # rows/cols 1..63 about 32
    assert np.abs(reflected - h[1][1:, 1:]).sum() <= 4 and h[1][0].sum() == h[1][:, 0].sum() == 0
    # a square at 45 degrees is a diamond: wider bounding box than at 0
    w = _images(sprites, [[0, 5, 0, 16, 16], [0, 5, 5, 16, 16]]).any(axis=1).sum(axis=1)
    np.testing.assert_allclose(w[1] / w[0], math.sqrt(2), rtol=0.1)


def test_too_many_positions_for_the_image_is_a_spec_error():
    with pytest.raises(SpecError, match="positions do not fit"):
        pyrovae.data.load("shapes_small", {"num_positions": 40})
    with pytest.raises(SpecError, match="num_shapes"):
        pyrovae.data.load("shapes_small", {"num_shapes": 4})


# --- the interface and the split ----------------------------------------------------------

def test_observation_layouts_agree():
    d = gt.Sprites("s", 32, 2, 2, 4, 4)
    f, obs = d.sample(20, np.random.RandomState(3))
    assert obs.shape == (20, 32, 32, 1) and obs.dtype == np.float32 and obs.flags.c_contiguous
    np.testing.assert_array_equal(d.observations_chw(f), gt.chw(obs))
    np.testing.assert_array_equal(gt.hwc(gt.chw(obs)), obs)
    np.testing.assert_array_equal(d.sample_observations(20, np.random.RandomState(3)), obs)


def test_shapes_small_split_is_seeded_disjoint_and_labelled_by_factors():
    data = pyrovae.data.load("shapes_small", {"num_train": 300, "num_test": 40, "split_seed": 2})
    g = data.ground_truth
    assert data.train.shape == (300, 1, 32, 32) and data.train.dtype == torch.uint8
    assert data.test.shape == (40, 1, 32, 32) and data.value_scale == 1.0 and data.train_labels is None
    assert len(np.intersect1d(g.train_indices, g.test_indices)) == 0
    assert g.train_factors.shape == (300, 5) and g.grid.total == 3 * 3 * 8 * 8 * 8
    np.testing.assert_array_equal(data.train.numpy(), g.images(g.train_indices))
    np.testing.assert_array_equal(data.test.numpy()[:, 0], _images(g, g.test_factors))
    again = pyrovae.data.load("shapes_small", {"num_train": 300, "num_test": 40, "split_seed": 2})
    np.testing.assert_array_equal(again.ground_truth.test_indices, g.test_indices)
    other = pyrovae.data.load("shapes_small", {"num_train": 300, "num_test": 40, "split_seed": 3})
    assert not np.array_equal(other.ground_truth.test_indices, g.test_indices)
    full = pyrovae.data.load("shapes_small")
    assert len(full.train) + len(full.test) == 4608 and len(full.test) == 500


@pytest.mark.parametrize("options, match", [
    ({"num_test": 0}, "num_test"), ({"num_test": 4608}, "num_test"),
    ({"num_train": 5000}, "num_train"), ({"num_train": True}, "num_train"),
    ({"split_seed": -1}, "split_seed"),
    ({"colour": 1}, "no option 'colour'"),
])
def test_bad_split_options_are_spec_errors(options, match):
    with pytest.raises(SpecError, match=match):
        pyrovae.data.load("shapes_small", options)


@pytest.mark.parametrize("net", [{"name": "conv", "channels": [8, 8, 16], "hidden": 32},
                                 {"name": "mlp", "hidden": [32]}])
def test_shapes_small_trains_through_the_registry(net):
    spec = {"data": {"name": "shapes_small", "num_train": 128, "num_test": 32},
            "model": {"latent_dim": 4, "encoder": net, "decoder": net},
            "train": {"epochs": 1, "batch_size": 64}}
    vae = pyrovae.build(spec)
    assert vae.data_shape == (1, 32, 32)
    hist = pyrovae.fit(vae, progress=False)
    assert len(hist) == 1 and np.isfinite(hist[0]["test_elbo"])


# --- the official file formats, on tiny fabricated files ----------------------------------

def _row_major(sizes):
    return np.indices(sizes).reshape(len(sizes), -1).T


def _fake_dsprites(path, sizes=(1, 3, 2, 4, 4, 4), seed=0, compressed=True):
    """An .npz in the official dSprites layout over a reduced grid: random 0/1 images."""
    classes = _row_major(sizes)
    values = np.stack([classes[:, 0] + 1.0, classes[:, 1] + 1.0, 0.5 + 0.1 * classes[:, 2],
                       classes[:, 3] * 0.3, classes[:, 4] / 3, classes[:, 5] / 3], axis=1)
    imgs = (np.random.RandomState(seed).rand(len(classes), 64, 64) < 0.3).astype(np.uint8)
    metadata = np.array({"latents_sizes": np.array(sizes)}, dtype=object)  # a pickle, as in the real file
    save = np.savez_compressed if compressed else np.savez
    save(path, imgs=imgs, latents_classes=classes, latents_values=values, metadata=metadata)
    return imgs, classes


@pytest.mark.parametrize("compressed", [True, False])
def test_dsprites_file_is_read_in_blocks_and_indexed_like_the_official_one(tmp_path, monkeypatch, compressed):
    path = tmp_path / official.DSPRITES_FILE
    imgs, _ = _fake_dsprites(path, compressed=compressed)
    monkeypatch.setattr(files, "BLOCK_BYTES", 7 * 64 * 64)  # 7 images a block: many blocks
    d = gt.open_dsprites(path)
    assert d.factors_num_values == [3, 2, 4, 4, 4] and d.factor_names[0] == "shape"
    np.testing.assert_allclose(d.factor_values[1], [0.5, 0.6])
    f = d.sample_factors(50, np.random.RandomState(0))
    expected = imgs[np.ravel_multi_index(f.T, [3, 2, 4, 4, 4])].astype(np.float32)[..., None]
    np.testing.assert_array_equal(d.sample_observations_from_factors(f, None), expected)  # bit store

    data = pyrovae.data.load("dsprites", {"path": str(path), "num_test": 40})  # covers the grid
    g = data.ground_truth
    assert data.train.shape == (344, 1, 64, 64) and data.value_scale == 1.0
    np.testing.assert_array_equal(data.train[:, 0].numpy(), imgs[g.train_indices])
    np.testing.assert_array_equal(data.test[:, 0].numpy(), imgs[g.test_indices])
    np.testing.assert_array_equal(g.sample_observations_from_factors(f, None), expected)  # from the splits
    part = pyrovae.data.load("dsprites", {"path": str(path), "num_train": 30, "num_test": 10,
                                          "source": "file"})
    np.testing.assert_array_equal(part.ground_truth.sample_observations_from_factors(f, None), expected)


def test_dsprites_without_its_file(tmp_path, monkeypatch):
    missing = str(tmp_path / "none.npz")
    with pytest.warns(UserWarning, match="rendering the factor grid procedurally"):
        data = pyrovae.data.load("dsprites", {"path": missing, "num_train": 60, "num_test": 20})
    assert data.train.shape == (60, 1, 64, 64) and isinstance(data.ground_truth, gt.Sprites)
    assert data.ground_truth.grid.total == 737_280
    with pytest.raises(DataError, match=f"{missing}.*does not exist.*download=true"):
        pyrovae.data.load("dsprites", {"path": missing, "source": "file"})
    with pytest.raises(SpecError, match="source must be one of auto, file, render"):
        pyrovae.data.load("dsprites", {"source": "official"})
    monkeypatch.setattr(official, "DSPRITES_URL", (tmp_path / "nowhere.npz").as_uri())
    with pytest.raises(DataError, match="could not download dsprites from file:"):
        pyrovae.data.load("dsprites", {"path": missing, "download": True, "num_train": 5, "num_test": 5})
    assert not (tmp_path / "none.npz.part").exists()
    served = tmp_path / "served.npz"
    imgs, _ = _fake_dsprites(served)
    monkeypatch.setattr(official, "DSPRITES_URL", served.as_uri())
    data = pyrovae.data.load("dsprites", {"path": missing, "download": True, "num_test": 10})
    np.testing.assert_array_equal(data.test[:, 0].numpy(), imgs[data.ground_truth.test_indices])


def test_malformed_dsprites_files_are_data_errors(tmp_path):
    path = tmp_path / "d.npz"
    imgs, classes = _fake_dsprites(path)
    np.savez(path, imgs=imgs, latents_classes=classes[::-1], latents_values=classes * 1.0)
    with pytest.raises(DataError, match="row-major"):
        gt.open_dsprites(path)
    np.savez(path, imgs=imgs[:-1], latents_classes=classes, latents_values=classes * 1.0)
    with pytest.raises(DataError, match="383 images for a factor grid"):
        gt.open_dsprites(path)
    np.savez(path, images=imgs)
    with pytest.raises(DataError, match="lacks imgs, latents_classes, latents_values"):
        gt.open_dsprites(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        gt.open_dsprites(path)


def _fake_shapes3d(path, sizes=(2, 2, 2, 2, 2, 3), seed=0):
    classes = _row_major(sizes)
    grids = [np.linspace(0, 0.9, 10)[:sizes[0]]] * 3 + [np.linspace(0.75, 1.25, 8)[:sizes[3]],
                                                          np.arange(4.0)[:sizes[4]],
                                                          np.linspace(-30, 30, 15)[:sizes[5]]]
    labels = np.stack([grids[j][classes[:, j]] for j in range(6)], axis=1)
    images = np.random.RandomState(seed).randint(0, 256, (len(classes), 64, 64, 3)).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, compression="gzip")
        f.create_dataset("labels", data=labels)
    return images, labels


def test_shapes3d_file(tmp_path, monkeypatch):
    path = tmp_path / "3dshapes.h5"
    images, labels = _fake_shapes3d(path)
    monkeypatch.setattr(files, "BLOCK_BYTES", 5 * 64 * 64 * 3)
    data = pyrovae.data.load("shapes3d", {"path": str(path), "num_test": 16})
    g = data.ground_truth
    assert g.factors_num_values == [2, 2, 2, 2, 2, 3] and g.observation_shape == (64, 64, 3)
    assert data.train.shape == (80, 3, 64, 64) and data.value_scale == pytest.approx(1 / 255)
    np.testing.assert_array_equal(data.train.permute(0, 2, 3, 1).numpy(), images[g.train_indices])
    np.testing.assert_allclose(g.factor_values[5], [-30, -25.714285714285715, -21.428571428571427])
    f = g.sample_factors(30, np.random.RandomState(0))
    obs = g.sample_observations_from_factors(f, np.random.RandomState(0))
    rows = np.ravel_multi_index(f.T, g.factors_num_values)
    np.testing.assert_allclose(obs, images[rows] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(labels[rows, 3],
                               g.factor_values[3][f[:, 3]])
    x = data.examples(data.train[:4])
    assert x.dtype == torch.float32 and float(x.max()) <= 1.0


def test_shapes3d_errors(tmp_path):
    with pytest.raises(DataError, match=r"3dshapes\.h5' does not exist; download"):
        pyrovae.data.load("shapes3d", {"path": str(tmp_path / "3dshapes.h5")})
    path = tmp_path / "bad.h5"
    images, labels = _fake_shapes3d(path)
    with h5py.File(path, "a") as f:
        f["labels"][...] = labels[::-1]
    with pytest.raises(DataError, match="row-major"):
        gt.open_shapes3d(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("pixels", data=images)
    with pytest.raises(DataError, match="no dataset 'images'"):
        gt.open_shapes3d(path)


def test_mpi3d_file(tmp_path, monkeypatch):
    sizes = [2, 2, 1, 1, 1, 3, 3]
    monkeypatch.setattr(official, "MPI3D_SIZES", sizes)
    images = np.random.RandomState(0).randint(0, 256, (36, 64, 64, 3)).astype(np.uint8)
    path = tmp_path / "mpi3d_real.npz"
    np.savez(path, images=images)
    data = pyrovae.data.load("mpi3d", {"variant": "real", "path": str(path), "num_train": 20, "num_test": 6})
    g = data.ground_truth
    assert g.num_factors == 7 and data.name == "mpi3d_real" and data.train.shape == (20, 3, 64, 64)
    np.testing.assert_array_equal(data.test.permute(0, 2, 3, 1).numpy(), images[g.test_indices])
    f = g.sample_factors(10, np.random.RandomState(1))
    np.testing.assert_allclose(g.sample_observations_from_factors(f, None),
                               images[np.ravel_multi_index(f.T, sizes)] / 255.0, rtol=1e-6)
    with pytest.raises(DataError, match=r"flat indices must be in \[0, 36\)"):
        g.images([0, 36])
    np.savez(path, images=images[:35])
    with pytest.raises(DataError, match="holds 35 images; the MPI3D factor grid"):
        pyrovae.data.load("mpi3d", {"variant": "real", "path": str(path)})
    with pytest.raises(SpecError, match="variant must be one of toy, realistic, real"):
        pyrovae.data.load("mpi3d", {"variant": "sim"})
    with pytest.raises(DataError, match="mpi3d_toy.npz"):
        pyrovae.data.load("mpi3d", {"path": str(tmp_path / "mpi3d_toy.npz")})
