"""lth.tickets: the ticket file (bit-identical round trips in float32 and bfloat16, model state, metadata,
readable with safetensors alone, sizes, every damaged or foreign file a one-line error), fitting a
ticket to a model, and the BCOO and compact forwards of a plain MLP."""

import json
import math
import os
import subprocess
import sys
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file
from safetensors.numpy import save_file as raw_save

import lth
import lth.tickets as ex
from lth.tickets.header import header_digest
from lth.errors import LthError, MaskError
from lth.models import get_model
from lth.sparsity.masks import apply_mask, make_mask, mask_leaves, named_leaves

DENSITIES = (1.0, 0.2, 0.05, 0.01)


@pytest.fixture(scope="module")
def lenet():
    params, _ = get_model("lenet300_100", (28, 28, 1), 10).init(jax.random.key(0))
    return params


@pytest.fixture(scope="module")
def lenet5():
    params, _ = get_model("lenet5", (28, 28, 1), 10).init(jax.random.key(1))  # flax linen, 4-D conv kernels
    return params


def random_mask(params, density, seed=0):
    """Layerwise random mask: every prunable leaf keeps exactly round(density * size) entries."""
    rng = np.random.default_rng(seed)

    def leaf(m):
        if m is None:
            return None
        keep = np.zeros(m.size, bool)
        keep[rng.choice(m.size, int(round(density * m.size)), replace=False)] = True
        return jnp.asarray(keep.reshape(m.shape))

    return jax.tree.map(leaf, make_mask(params), is_leaf=lambda x: x is None)


def bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"uint{8 * x.dtype.itemsize}")) if x.dtype != bool else x


def assert_bit_identical(a, b):
    assert sorted(named_leaves(a)) == sorted(named_leaves(b))
    other = named_leaves(b)
    for name, x in named_leaves(a).items():
        assert np.asarray(x).dtype == np.asarray(other[name]).dtype, name
        assert np.array_equal(bits(x), bits(other[name])), name


def assert_same_mask(a, b):
    assert sorted(mask_leaves(a)) == sorted(mask_leaves(b))
    assert sorted(named_leaves(a)) == sorted(named_leaves(b))
    other = mask_leaves(b)
    for name, x in mask_leaves(a).items():
        assert np.array_equal(np.asarray(x), np.asarray(other[name])), name
    nones = lambda m: sorted(k for k, v in named_leaves(m).items() if v is None)  # noqa: E731
    assert nones(a) == nones(b)


def one_line(err):
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("density", DENSITIES)
def test_round_trip_is_bit_identical(lenet, density, tmp_path):
    mask = random_mask(lenet, density)
    path = ex.save(tmp_path / "ticket.safetensors", mask, lenet)
    ticket = ex.load(path)
    assert_bit_identical(apply_mask(lenet, mask), ticket.params)  # zeros where pruned
    assert_same_mask(mask, ticket.mask)
    assert ticket.model_state == {} and ticket.trained is None

    # only the kept values are stored: as many as the mask keeps; biases whole
    tensors = load_file(path)
    kept = lth.sparsity.masks.count_remaining(mask)
    assert sum(v.size for k, v in tensors.items() if k.startswith("params/") and k.endswith("kernel")) == kept
    assert tensors["params/fc1/bias"].shape == (300,)
    assert ticket.metadata["weights_remaining"] == kept
    assert ticket.metadata["density"] == pytest.approx(lth.density(mask))
    assert ticket.metadata["layer_density"] == pytest.approx(lth.layer_densities(mask))


def test_pruned_entries_are_not_stored_and_come_back_zero(lenet, tmp_path):
    mask = random_mask(lenet, 0.05, seed=1)
    ticket = ex.load(ex.save(tmp_path / "t.safetensors", mask, lenet))  # lenet's pruned entries are not zero
    kernel, keep = ticket.params["fc1"]["kernel"], np.asarray(mask["fc1"]["kernel"])
    assert not kernel[~keep].any()
    assert np.array_equal(bits(kernel[keep]), bits(np.asarray(lenet["fc1"]["kernel"])[keep]))
    stored = load_file(tmp_path / "t.safetensors")["params/fc1/kernel"]
    assert np.array_equal(bits(stored), bits(np.asarray(lenet["fc1"]["kernel"]).reshape(-1)[keep.reshape(-1)]))


def test_round_trip_conv_bfloat16_trained_weights_and_metadata(lenet5, tmp_path):
    mask = random_mask(lenet5, 0.2, seed=2)
    half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), lenet5)
    trained = jax.tree.map(lambda p: (p * 3 + 1).astype(jnp.bfloat16), lenet5)
    metadata = {"model": "lenet5", "level": 4, "record": {"test_accuracy": 0.9123456789, "layer_density": {"a": 0.5}},
                "config": {"name": "x", "levels": [1, 2]}}
    ticket = ex.load(ex.save(tmp_path / "bf16.safetensors", mask, half, metadata=metadata, trained=trained))
    assert_bit_identical(apply_mask(half, mask), ticket.params)
    assert_bit_identical(apply_mask(trained, mask), ticket.trained)
    assert_same_mask(mask, ticket.mask)
    assert named_leaves(ticket.params)["conv1/kernel"].dtype == jnp.bfloat16
    assert {k: ticket.metadata[k] for k in metadata} == metadata
    assert ticket.metadata["format"] == ex.FORMAT and ticket.metadata["version"] == ex.VERSION
    assert ticket.metadata["sha256"]["trained"] and ticket.metadata["lth_version"]
    # the trained weights are not part of the ticket's identity
    assert ticket.digest == ex.load(ex.save(tmp_path / "no_trained.safetensors", mask, half)).digest


def test_model_state_round_trips(tmp_path):
    model = get_model("resnet20", (32, 32, 3), 10)
    params, model_state = model.init(jax.random.key(3))
    model_state = jax.tree.map(lambda s: s + jax.random.uniform(jax.random.key(4), s.shape), model_state)
    mask = random_mask(params, 0.3, seed=4)
    ticket = ex.load(ex.save(tmp_path / "r.safetensors", mask, params, model_state))
    assert_bit_identical(model_state, ticket.model_state)
    fitted_params, fitted_mask, fitted_state = ex.fit(ticket, params, model_state)
    assert jax.tree.structure(fitted_state) == jax.tree.structure(model_state)
    assert_bit_identical(apply_mask(params, mask), fitted_params)
    assert_same_mask(mask, fitted_mask)


READER = """
import builtins, json, math, sys, zlib
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name.split(".")[0] in ("lth", "jax", "flax"):
        raise ImportError(f"{name} is not available here")
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
try:
    import lth
    sys.exit("lth imported")
except ImportError:
    pass
path, out = sys.argv[1], sys.argv[2]
tensors = load_file(path)
with safe_open(path, framework="np") as f:
    header = json.loads(f.metadata()["lth_ticket"])
result = {}
for leaf in header["leaves"]["params"]:
    name, shape = leaf["path"], leaf["shape"]
    values = tensors["params/" + name]
    if "kept" in leaf:
        n = math.prod(shape)
        packed = np.frombuffer(zlib.decompress(tensors["mask/" + name].tobytes()), np.uint8)
        mask = np.unpackbits(packed, count=n).astype(bool)
        dense = np.zeros(n, values.dtype)
        dense[mask] = values
        result["mask/" + name] = mask.reshape(shape)
        values = dense.reshape(shape)
    result["params/" + name] = values
np.savez(out, **result)
print(header["model"], header["level"], header["density"])
"""


def test_loads_with_safetensors_and_numpy_alone(lenet, tmp_path):
    """The README's recipe, in a process where lth (and jax) cannot be imported."""
    mask = random_mask(lenet, 0.05, seed=5)
    path = ex.save(tmp_path / "t.safetensors", mask, lenet, metadata={"model": "lenet300_100", "level": 7})
    script = tmp_path / "reader.py"
    script.write_text(READER)
    proc = subprocess.run([sys.executable, "-I", str(script), str(path), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["lenet300_100", "7"]
    with np.load(tmp_path / "out.npz") as f:
        for name, keep in mask_leaves(mask).items():
            assert np.array_equal(f["mask/" + name], np.asarray(keep)), name
        for name, leaf in named_leaves(apply_mask(lenet, mask)).items():
            assert np.array_equal(bits(f["params/" + name]), bits(leaf)), name


# --------------------------------------------------------------------------- sizes


def test_sizes_at_5_percent(lenet, tmp_path):
    mask = random_mask(lenet, 0.05)
    path = ex.save(tmp_path / "t.safetensors", mask, lenet)
    sizes = ex.ticket_sizes(lenet, mask)
    on_disk = ex.ticket_size(path)
    assert on_disk["ticket"] == path.stat().st_size == sizes["ticket_bytes"]
    assert on_disk["dense_compressed"] == sizes["dense_compressed"]
    kept = lth.sparsity.masks.count_remaining(mask)
    assert sizes["values_bytes"] == 4 * kept + 4 * (300 + 100 + 10)  # kept kernel entries and the biases, float32
    # the file is the values, the deflated mask bits (below the raw n / 8 bytes) and a header of a few kB
    raw_bits = sum(math.ceil(np.asarray(m).size / 8) for m in mask_leaves(mask).values())
    assert sizes["mask_bytes"] < raw_bits
    assert sizes["values_bytes"] + sizes["mask_bytes"] < sizes["ticket_bytes"] < sizes["values_bytes"] + \
        sizes["mask_bytes"] + 4000
    assert sizes["ticket_bytes"] < 0.07 * sizes["dense_raw"]


# --------------------------------------------------------------------------- inference


@pytest.mark.parametrize("density", (1.0, 0.05))
def test_bcoo_forward_equals_masked_dense_forward(lenet, density):
    mask = random_mask(lenet, density, seed=3)
    x = jax.random.normal(jax.random.key(4), (16, 28, 28, 1))
    dense = ex.dense_forward(ex.masked_params(lenet, mask), x)
    model = get_model("lenet300_100", (28, 28, 1), 10)
    reference, _ = model.apply(apply_mask(lenet, mask), {}, x, False)
    sparse_params = ex.to_bcoo(lenet, mask)
    assert sparse_params["fc1"]["kernel"].nse == int(np.asarray(mask["fc1"]["kernel"]).sum())
    out = ex.sparse_forward(sparse_params, x)
    np.testing.assert_allclose(np.asarray(dense), np.asarray(reference), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), np.asarray(dense), rtol=1e-4, atol=1e-5)


def test_compact_network_removes_cut_off_neurons_and_computes_the_same(lenet):
    mask = random_mask(lenet, 0.01, seed=5)
    net = ex.compact_network("lenet300_100", lenet, {}, mask, (28, 28, 1))
    units = net.report["units"]
    assert units["fc1"][0] < 300 and units["fc2"][0] < 100
    assert units["input"][0] == net.input_index.size < 784
    assert net.params["output"]["kernel"].shape[1] == 10
    x = jax.random.normal(jax.random.key(6), (16, 28, 28, 1))
    dense = ex.dense_forward(ex.masked_params(lenet, mask), x)
    np.testing.assert_allclose(np.asarray(ex.compact_forward(net, x)), np.asarray(dense), rtol=1e-5, atol=1e-6)


def test_compact_network_folds_neurons_without_inputs_into_the_next_bias():
    key = jax.random.key(7)
    params = {
        "fc1": {"kernel": jax.random.normal(key, (4, 3)), "bias": jnp.array([0.5, -1.0, 2.0])},
        "fc2": {"kernel": jax.random.normal(jax.random.key(10), (3, 3)), "bias": jnp.array([0.3, 0.1, -0.2])},
        "output": {"kernel": jax.random.normal(jax.random.key(8), (3, 2)), "bias": jnp.array([0.1, 0.2])},
    }
    mask = make_mask(params)
    mask["fc1"]["kernel"] = mask["fc1"]["kernel"].at[:, 2].set(False)  # unit 2: constant relu(2.0)
    mask["fc2"]["kernel"] = mask["fc2"]["kernel"].at[1, :].set(False)  # fc1 unit 1: no output
    net = ex.compact_network("mlp_tiny", params, {}, mask, (2, 2, 1))
    assert net.report["units"]["fc1"] == [1, 3]
    assert net.report["spaces"]["fc1"]["folded"] == 1 and net.report["spaces"]["fc1"]["no_output"] == 1
    assert net.input_index is None  # every input feeds the live unit
    x = jax.random.normal(jax.random.key(9), (5, 2, 2, 1))
    np.testing.assert_allclose(np.asarray(ex.compact_forward(net, x)),
                               np.asarray(ex.dense_forward(ex.masked_params(params, mask), x)), rtol=1e-6, atol=1e-6)


def test_sparse_forward_refuses_other_models(lenet5):
    with pytest.raises(LthError) as err:
        ex.to_bcoo(lenet5)
    assert "plain MLPs" in one_line(err)


# --------------------------------------------------------------------------- errors


def test_missing_damaged_and_foreign_files_raise_one_line_errors(lenet, tmp_path):
    with pytest.raises(LthError) as err:
        ex.load(tmp_path / "nope.safetensors")
    assert "not found" in one_line(err)
    with pytest.raises(LthError) as err:
        ex.load(tmp_path)
    assert "directory" in one_line(err)

    path = ex.save(tmp_path / "t.safetensors", random_mask(lenet, 0.2), lenet)
    data = bytearray(path.read_bytes())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(LthError) as err:
        ex.load(truncated)
    assert "damaged" in one_line(err)

    flipped = tmp_path / "flipped.safetensors"  # one bit of one stored weight: the digest no longer matches
    data[-100] ^= 0x01
    flipped.write_bytes(bytes(data))
    with pytest.raises(LthError) as err:
        ex.load(flipped)
    assert "do not match the SHA-256" in one_line(err)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(LthError) as err:
        ex.load(garbage)
    assert "damaged or not a .safetensors file" in one_line(err)

    foreign = tmp_path / "weights.safetensors"  # a valid safetensors file without the ticket header
    raw_save({"w": np.ones(3, np.float32)}, foreign)
    with pytest.raises(LthError) as err:
        ex.load(foreign)
    assert "not an lth ticket" in one_line(err)


def _rewrite(path, out, change):
    """A copy of a ticket file with its header changed by `change` (tensors untouched)."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as f:
        header = json.loads(f.metadata()["lth_ticket"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(header, tensors)
    raw_save(tensors, out, metadata={"lth_ticket": json.dumps(header)})
    return out


def test_inconsistent_headers_raise_one_line_errors(lenet, tmp_path):
    path = ex.save(tmp_path / "t.safetensors", random_mask(lenet, 0.05), lenet)

    def shape(h, t):
        h["leaves"]["params"][1]["shape"] = [784, 299]

    def version(h, t):
        h["version"] = 99

    def fmt(h, t):
        h["format"] = "something-else"

    def mask_bits(h, t):  # another mask with the same count: the digest catches it
        t["mask/fc1/kernel"] = np.frombuffer(zlib.compress(np.packbits(np.roll(np.unpackbits(
            np.frombuffer(zlib.decompress(t["mask/fc1/kernel"].tobytes()), np.uint8)), 1)).tobytes()), np.uint8)

    cases = {"shape": (shape, "its header does not match the SHA-256"), "version": (version, "format version 99"),
             "format": (fmt, "not an lth ticket"), "mask": (mask_bits, "do not match the SHA-256")}
    for name, (change, message) in cases.items():
        bad = _rewrite(path, tmp_path / f"{name}.safetensors", change)
        with pytest.raises(LthError) as err:
            ex.load(bad)
        assert message in one_line(err), name

    def shape_and_digest(h, t):  # a consistent digest over an inconsistent header
        shape(h, t)
        h["sha256"]["ticket"] = ex.file.digest(t, h["leaves"], ex.file.START_PARTS)
        h["sha256"]["header"] = header_digest(h)

    with pytest.raises(LthError) as err:
        ex.load(_rewrite(path, tmp_path / "inconsistent.safetensors", shape_and_digest))
    assert "inconsistent" in one_line(err)


def test_a_ticket_that_does_not_fit_the_model_raises_mask_error(lenet, lenet5, tmp_path):
    ticket = ex.load(ex.save(tmp_path / "t.safetensors", random_mask(lenet, 0.2), lenet))
    tiny, _ = get_model("mlp_tiny", (28, 28, 1), 10).init(jax.random.key(0))
    with pytest.raises(MaskError) as err:
        ex.fit(ticket, tiny, {})
    assert "params fc1/bias is float32[300] in the ticket but float32[32] in the model" in one_line(err)
    with pytest.raises(MaskError) as err:
        ex.fit(ticket, lenet5, {})
    assert "does not fit the model" in one_line(err)
    with pytest.raises(MaskError) as err:  # same paths and shapes, another dtype
        ex.fit(ticket, jax.tree.map(lambda p: p.astype(jnp.bfloat16), lenet), {})
    assert "bfloat16" in one_line(err)
    with pytest.raises(MaskError):
        ex.save(tmp_path / "wrong.safetensors", make_mask(tiny), lenet)
    assert not (tmp_path / "wrong.safetensors").exists()
