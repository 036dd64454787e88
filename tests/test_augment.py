"""CIFAR augmentation on device: padded random crop and horizontal flip."""

import jax
import jax.numpy as jnp
import numpy as np

from lth.data.device import crop_flip


def test_crop_flip_is_a_shifted_window_possibly_flipped():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 3)).astype(np.float32)
    pad = np.array([-1.0, -2.0, -3.0], np.float32)
    out = np.asarray(crop_flip(jax.random.key(0), jnp.asarray(x), jnp.asarray(pad), padding=2))
    assert out.shape == x.shape
    padded = np.concatenate([np.broadcast_to(pad, (64, 12, 12, 3))], 0).copy()
    padded[:, 2:10, 2:10, :] = x
    flips = shifts = 0
    for i in range(64):
        found = None
        for dy in range(5):
            for dx in range(5):
                window = padded[i, dy:dy + 8, dx:dx + 8]
                if np.array_equal(out[i], window):
                    found = (dy, dx, False)
                elif np.array_equal(out[i], window[:, ::-1]):
                    found = (dy, dx, True)
        assert found is not None, i
        flips += found[2]
        shifts += found[:2] != (2, 2)
    assert 16 < flips < 48 and shifts > 32  # both happen, at random


def test_crop_flip_is_keyed():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(16, 8, 8, 1)).astype(np.float32))
    pad = jnp.zeros(1)
    a, b = crop_flip(jax.random.key(3), x, pad), crop_flip(jax.random.key(3), x, pad)
    c = crop_flip(jax.random.key(4), x, pad)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.asarray(a), np.asarray(c))
