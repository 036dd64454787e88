"""Data on the device: training arrays, padded evaluation batches and per-epoch batch orders."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lth.data.dataset import Dataset


class EvalSet(NamedTuple):
    """An evaluation split cut into equal batches; `weight` is 0 on padding rows."""

    x: jax.Array  # [batches, batch, ...]
    y: jax.Array  # [batches, batch]
    weight: jax.Array  # [batches, batch] float32


class DeviceData(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    val: EvalSet
    test: EvalSet
    pad_value: jax.Array  # per channel: the value of a black pixel after normalisation (crop padding)


def eval_layout(n: int, batch_size: int = 1000) -> tuple[int, int]:
    """(batches, batch) of an evaluation split of `n` examples: whole batches of at most `batch_size`,
    at least one batch of one row (an empty split)."""
    batch = max(1, min(batch_size, n))
    return max(1, -(-n // batch)), batch


def eval_set(x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> EvalSet:
    """Pad to a whole number of batches (padding has weight 0) and reshape. An empty split (no
    validation set) becomes one batch of one weight-0 row: its loss and accuracy evaluate to NaN."""
    n = len(y)
    batches, batch = eval_layout(n, batch_size)
    pad = batches * batch - n
    xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
    yp = np.concatenate([y, np.zeros(pad, y.dtype)]) if pad else y
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return EvalSet(put(xp.reshape(batches, batch, *x.shape[1:])), put(yp.reshape(batches, batch)),
                   put(w.reshape(batches, batch)))


def put(array: np.ndarray) -> jax.Array:
    """`jnp.asarray(array)` without its copy program: the dtype made canonical on the host (64-bit types
    to 32-bit unless x64 is on, as `jnp.asarray` does), then a plain transfer. (`jnp.asarray` compiles a
    small program per shape and dtype to copy an array in: ~10-50 ms each on a cold CPU process.)"""
    return jax.device_put(np.asarray(array, dtype=jax.dtypes.canonicalize_dtype(array.dtype)))


def to_device(ds: Dataset, eval_batch_size: int = 1000) -> DeviceData:
    """Put a dataset on the default device, once; batches are cut inside the jitted epoch."""
    return DeviceData(
        put(ds.x_train),
        put(ds.y_train),
        eval_set(ds.x_val, ds.y_val, eval_batch_size),
        eval_set(ds.x_test, ds.y_test, eval_batch_size),
        # the smallest value of each channel in train is a black pixel once normalised, which is
        # what torchvision's RandomCrop(padding=4) pads with before normalisation
        put(ds.x_train.reshape(-1, ds.x_train.shape[-1]).min(axis=0) if ds.x_train.ndim == 4
            else np.zeros(1, np.float32)),
    )


def device_shapes(ds: Dataset, eval_batch_size: int = 1000) -> DeviceData:
    """The shapes and dtypes of `to_device(ds)` as `jax.ShapeDtypeStruct`s, nothing moved: to compile
    the programs that take the data while it is being put on the device."""

    def like(shape: tuple[int, ...], dtype: np.dtype) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(shape, jax.dtypes.canonicalize_dtype(dtype))

    def split(x: np.ndarray, y: np.ndarray) -> EvalSet:
        batches, batch = eval_layout(len(y), eval_batch_size)
        return EvalSet(like((batches, batch, *x.shape[1:]), x.dtype), like((batches, batch), y.dtype),
                       like((batches, batch), np.dtype(np.float32)))

    channels = ds.x_train.shape[-1] if ds.x_train.ndim == 4 else 1
    pad_dtype = ds.x_train.dtype if ds.x_train.ndim == 4 else np.dtype(np.float32)
    return DeviceData(like(ds.x_train.shape, ds.x_train.dtype), like(ds.y_train.shape, ds.y_train.dtype),
                      split(ds.x_val, ds.y_val), split(ds.x_test, ds.y_test), like((channels,), pad_dtype))


@functools.partial(jax.jit, static_argnums=(2, 3))
def epoch_order(key: jax.Array, epoch: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """Example indices of every batch of one epoch, [steps_per_epoch, batch]; the remainder is dropped."""
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
    steps = num_examples // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size).astype(jnp.int32)


AUGMENTATIONS = ("none", "crop_flip")


def crop_flip(key: jax.Array, x_BxHxWxC: jax.Array, pad_C: jax.Array, padding: int = 4) -> jax.Array:
    """Random crop of a `padding`-padded image (pad value `pad_C`) and a horizontal flip with p = 1/2,
    per image, on device (the CIFAR augmentation of the LTH papers)."""
    b, h, w, c = x_BxHxWxC.shape
    padded = jnp.pad(x_BxHxWxC, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    inside_HxW = jnp.pad(jnp.ones((h, w), bool), padding)
    padded = jnp.where(inside_HxW[None, :, :, None], padded, pad_C.astype(padded.dtype))
    k_y, k_x, k_flip = jax.random.split(key, 3)
    dy = jax.random.randint(k_y, (b,), 0, 2 * padding + 1)
    dx = jax.random.randint(k_x, (b,), 0, 2 * padding + 1)
    crops = jax.vmap(lambda img, y, x: jax.lax.dynamic_slice(img, (y, x, 0), (h, w, c)))(padded, dy, dx)
    flip = jax.random.bernoulli(k_flip, 0.5, (b,))
    return jnp.where(flip[:, None, None, None], crops[:, :, ::-1, :], crops)
