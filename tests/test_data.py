"""Embedded datasets: shapes, deterministic disjoint splits, normalisation, the cache."""

import numpy as np
import pytest

from lth.data import load_dataset
from lth.data.device import epoch_order
from lth.errors import ConfigError


def test_mnist5k_real_digits_split():
    ds = load_dataset("mnist5k")
    assert ds.sizes() == {"train": 3500, "validation": 500, "test": 1000}
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.input_shape == (28, 28, 1)
    # the splits partition the 5,000 images (no image twice)
    train, val, test = ({x.tobytes() for x in part} for part in (ds.x_train, ds.x_val, ds.x_test))
    assert not (train & test) and not (train & val) and not (val & test)
    assert np.bincount(np.concatenate([ds.y_train, ds.y_val, ds.y_test])).tolist() == [500] * 10
    # normalised with MNIST's mean and std: background pixels are (0 - 0.1307) / 0.3081
    assert ds.x_train.min() == pytest.approx(-0.1307 / 0.3081, rel=1e-5)
    assert ds.x_train.max() == pytest.approx((1 - 0.1307) / 0.3081, rel=1e-5)


def test_mnist1d_generated_deterministically(_data_dir):
    ds = load_dataset("mnist1d")
    assert ds.sizes() == {"train": 3500, "validation": 500, "test": 1000}
    assert ds.input_shape == (40,)
    assert abs(float(ds.x_train.mean())) < 1e-4 and float(ds.x_train.std()) == pytest.approx(1.0, rel=1e-3)
    again = load_dataset("mnist1d", root=_data_dir / "fresh")  # rebuilt from the generator, not the cache
    np.testing.assert_array_equal(ds.x_test, again.x_test)
    np.testing.assert_array_equal(ds.y_train, again.y_train)


def test_validation_size_and_corrupt_cache(tmp_path):
    ds = load_dataset("mnist1d", validation_size=1000, root=tmp_path)
    assert ds.sizes()["validation"] == 1000 and ds.sizes()["train"] == 3000
    (cache,) = list(tmp_path.glob("mnist1d-*.npz"))
    cache.write_bytes(cache.read_bytes()[:100])  # truncated: rebuilt, not trusted
    again = load_dataset("mnist1d", validation_size=1000, root=tmp_path)
    np.testing.assert_array_equal(ds.x_val, again.x_val)


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="unknown dataset 'cifar11'"):
        load_dataset("cifar11")


def test_epoch_order_is_a_function_of_key_and_epoch():
    import jax

    a = np.asarray(epoch_order(jax.random.key(0), 3, 100, 30))
    b = np.asarray(epoch_order(jax.random.key(0), 3, 100, 30))
    c = np.asarray(epoch_order(jax.random.key(0), 4, 100, 30))
    assert a.shape == (3, 30) and len(np.unique(a)) == 90
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
