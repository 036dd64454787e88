"""`lth.data.device.put`: the arrays `jnp.asarray` gives, without its copy program."""

import logging

import jax
import jax.numpy as jnp
import numpy as np

from lth.data.device import put


def test_put_gives_what_jnp_asarray_gives():
    gen = np.random.default_rng(0)
    float64 = np.concatenate([gen.standard_normal(9) * 1e-30, [1e-40, -1e-44]])  # denormals in float32
    arrays = [gen.standard_normal((7, 5)).astype(np.float32), float64,
              gen.integers(-2**31, 2**31, 6, dtype=np.int64), gen.integers(0, 255, (3, 4), dtype=np.uint8),
              gen.random(4) > 0.5, np.zeros((0, 3), np.float32), np.float32(2.5) * np.ones(())]
    for array in arrays:
        mine, reference = put(array), jnp.asarray(array)
        assert mine.dtype == reference.dtype and mine.shape == reference.shape, array.dtype
        assert np.asarray(mine).tobytes() == np.asarray(reference).tobytes(), array.dtype
        assert mine.committed == reference.committed and mine.sharding == reference.sharding


def test_put_compiles_nothing():
    array = np.arange(12, dtype=np.float32).reshape(3, 4) + 0.5  # a shape no other test puts
    compiles = []

    class Count(logging.Handler):
        def emit(self, record):
            if "Compiling" in record.getMessage():
                compiles.append(record.getMessage())

    handler = Count()
    logger = logging.getLogger("jax._src.interpreters.pxla")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            put(array).block_until_ready()
            during_put = list(compiles)
            jax.jit(lambda x: x + 1.0)(array).block_until_ready()  # a new program: the counter does count
    finally:
        logger.removeHandler(handler)
    assert during_put == [] and len(compiles) == 1, compiles
