"""lth.tickets: sparse ticket files (bit-identical round trip, sizes, errors), the BCOO and compact
forwards of a plain MLP, and export_from_run on a tiny finished run."""

import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

import lth
import lth.tickets as ex
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
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (name, x), y in zip(named_leaves(a).items(), jax.tree.leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype, name
        assert np.array_equal(bits(x), bits(y)), name


def assert_same_mask(a, b):
    assert list(mask_leaves(a)) == list(mask_leaves(b))
    assert list(named_leaves(a)) == list(named_leaves(b))
    for (name, x), y in zip(mask_leaves(a).items(), mask_leaves(b).values()):
        assert np.array_equal(np.asarray(x), np.asarray(y)), name
    nones = lambda m: [k for k, v in named_leaves(m).items() if v is None]  # noqa: E731
    assert nones(a) == nones(b)


def one_line(err):
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("density", DENSITIES)
def test_round_trip_is_bit_identical(lenet, density, tmp_path):
    mask = random_mask(lenet, density)
    path = ex.export_ticket(lenet, mask, tmp_path / "ticket.npz")
    expected = apply_mask(lenet, mask)

    params, loaded_mask = ex.import_ticket(path, lenet)  # with a template
    assert_bit_identical(expected, params)
    assert_same_mask(mask, loaded_mask)

    params, loaded_mask = ex.import_ticket(path)  # without: nested dicts, linen's structure
    assert_bit_identical(expected, params)
    assert_same_mask(mask, loaded_mask)

    # only the surviving values are stored: as many as the mask keeps, biases dense
    header = ex.read_header(path)
    with np.load(path) as f:
        stored = {k: f[k] for k in f.files}
    values = sum(v.size for k, v in stored.items() if k.endswith("_values"))
    assert values == lth.sparsity.masks.count_remaining(mask) == header["weights_remaining"]
    assert [e["path"] for e in header["leaves"]] == list(named_leaves(lenet))
    for i, entry in enumerate(header["leaves"]):
        kind = "dense" if entry["path"].endswith("bias") else entry["encoding"]
        assert entry["encoding"] == kind
        assert f"leaf_{i:04d}_{kind}" in stored
    assert header["density"] == pytest.approx(lth.density(mask))


def test_pruned_entries_are_not_stored_and_come_back_zero(lenet, tmp_path):
    mask = random_mask(lenet, 0.05, seed=1)
    ex.export_ticket(lenet, mask, tmp_path / "t.npz")  # lenet's pruned entries are not zero
    params, _ = ex.import_ticket(tmp_path / "t.npz", lenet)
    kernel, keep = np.asarray(params["fc1"]["kernel"]), np.asarray(mask["fc1"]["kernel"])
    assert not kernel[~keep].any()
    assert np.array_equal(bits(kernel[keep]), bits(np.asarray(lenet["fc1"]["kernel"])[keep]))


def test_round_trip_linen_conv_model_and_bfloat16(lenet5, tmp_path):
    params = lenet5
    mask = random_mask(params, 0.2, seed=2)
    ex.export_ticket(params, mask, tmp_path / "conv.npz", meta={"model": "lenet5"})
    loaded, loaded_mask = ex.import_ticket(tmp_path / "conv.npz", params)
    assert_bit_identical(apply_mask(params, mask), loaded)
    assert_same_mask(mask, loaded_mask)
    assert ex.read_header(tmp_path / "conv.npz")["meta"] == {"model": "lenet5"}

    half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    ex.export_ticket(half, mask, tmp_path / "bf16.npz", compressed=False)
    loaded, _ = ex.import_ticket(tmp_path / "bf16.npz", half)
    assert_bit_identical(apply_mask(half, mask), loaded)


def test_index_dtype_is_the_smallest_that_fits():
    assert ex.index_dtype(65_536) == np.uint16
    assert ex.index_dtype(65_537) == np.uint32
    assert ex.index_dtype(2**32) == np.uint32
    assert ex.index_dtype(2**32 + 1) == np.int64


def test_indices_encoding_round_trips(tmp_path):
    # a very sparse large leaf stores indices (uint32 here), not a bitmap, in both modes
    params = {"w": {"kernel": jnp.arange(200_000, dtype=jnp.float32).reshape(400, 500)}, "b": {"bias": jnp.ones(3)}}
    keep = np.zeros(200_000, bool)
    keep[np.random.default_rng(0).choice(200_000, 60, replace=False)] = True
    mask = {"w": {"kernel": jnp.asarray(keep.reshape(400, 500))}, "b": {"bias": None}}
    for compressed in (True, False):
        path = ex.export_ticket(params, mask, tmp_path / f"i{compressed}.npz", compressed=compressed)
        entry = ex.read_header(path)["leaves"][1]
        assert (entry["path"], entry["encoding"], entry["index_dtype"]) == ("w/kernel", "indices", "uint32")
        loaded, loaded_mask = ex.import_ticket(path, params)
        assert_bit_identical(apply_mask(params, mask), loaded)
        assert_same_mask(mask, loaded_mask)


# --------------------------------------------------------------------------- sizes


def test_sizes_at_5_percent(lenet, tmp_path):
    mask = random_mask(lenet, 0.05)
    path = ex.export_ticket(lenet, mask, tmp_path / "t.npz")
    sizes = ex.ticket_sizes(lenet, mask)
    on_disk = ex.ticket_size(path)
    assert on_disk["sparse"] == path.stat().st_size == sizes["sparse_compressed"]
    assert on_disk["dense_compressed"] == sizes["dense_compressed"]
    assert on_disk["dense_raw"] == sizes["dense_raw"]
    # measured: 64.5 kB sparse vs 80.8 kB dense compressed (0.80) vs 1,068 kB dense raw (0.060).
    # Deflate already squeezes the zeros of the dense file; the values (float32, 53 kB) do not compress.
    assert sizes["sparse_compressed"] < 0.9 * sizes["dense_compressed"]
    assert sizes["sparse_compressed"] < 0.08 * sizes["dense_raw"]
    assert sizes["sparse_raw"] < 0.1 * sizes["dense_raw"]
    assert sizes["values_bytes"] == 4 * lth.sparsity.masks.count_remaining(mask)
    assert sizes["values_bytes"] < sizes["sparse_compressed"]


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


def test_compact_mlp_removes_cut_off_neurons_and_computes_the_same(lenet):
    mask = random_mask(lenet, 0.01, seed=5)
    index, small, report = ex.compact_mlp(lenet, mask)
    assert report["hidden"]["fc1"][0] < 300 and report["hidden"]["fc2"][0] < 100
    assert report["inputs"][0] == index.size < 784
    assert small["output"]["kernel"].shape[1] == 10
    assert report["weights"] <= lth.sparsity.masks.count_remaining(mask)
    x = jax.random.normal(jax.random.key(6), (16, 28, 28, 1))
    dense = ex.dense_forward(ex.masked_params(lenet, mask), x)
    np.testing.assert_allclose(np.asarray(ex.compact_forward(jnp.asarray(index), small, x)), np.asarray(dense),
                               rtol=1e-5, atol=1e-6)


def test_compact_mlp_folds_neurons_without_inputs_into_the_next_bias():
    key = jax.random.key(7)
    params = {
        "fc1": {"kernel": jax.random.normal(key, (4, 3)), "bias": jnp.array([0.5, -1.0, 2.0])},
        "output": {"kernel": jax.random.normal(jax.random.key(8), (3, 2)), "bias": jnp.array([0.1, 0.2])},
    }
    mask = make_mask(params)
    mask["fc1"]["kernel"] = mask["fc1"]["kernel"].at[:, 2].set(False)  # unit 2: constant relu(2.0)
    mask["output"]["kernel"] = mask["output"]["kernel"].at[1, :].set(False)  # unit 1: no output
    index, small, report = ex.compact_mlp(params, mask)
    assert report["hidden"]["fc1"] == [1, 3]
    assert report["folded_constant"]["fc1"] == 1 and report["removed_no_output"]["fc1"] == 1
    assert index is None  # every input feeds the live unit
    x = jax.random.normal(jax.random.key(9), (5, 4))
    np.testing.assert_allclose(np.asarray(ex.compact_forward(index, small, x)),
                               np.asarray(ex.dense_forward(ex.masked_params(params, mask), x)), rtol=1e-6, atol=1e-6)


def test_sparse_forward_refuses_other_models(lenet5):
    with pytest.raises(LthError) as err:
        ex.to_bcoo(lenet5)
    assert "plain MLPs" in one_line(err)


# --------------------------------------------------------------------------- errors


def test_missing_corrupt_and_foreign_files_raise_one_line_errors(lenet, tmp_path):
    with pytest.raises(LthError) as err:
        ex.import_ticket(tmp_path / "nope.npz")
    assert "not found" in one_line(err)

    path = ex.export_ticket(lenet, random_mask(lenet, 0.2), tmp_path / "t.npz")
    data = bytearray(path.read_bytes())
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(LthError) as err:
        ex.import_ticket(truncated)
    assert "damaged" in one_line(err)

    flipped = tmp_path / "flipped.npz"  # a byte in the middle of the compressed values
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    with pytest.raises(LthError) as err:
        ex.import_ticket(flipped)
    assert "damaged" in one_line(err)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(LthError) as err:
        ex.import_ticket(garbage)
    one_line(err)

    mask_file = tmp_path / "mask.npz"  # an lth mask file, not a ticket
    np.savez_compressed(mask_file, **lth.sparsity.masks.mask_to_arrays(random_mask(lenet, 0.2)))
    with pytest.raises(LthError) as err:
        ex.import_ticket(mask_file)
    assert "not an lth ticket" in one_line(err)


def test_inconsistent_header_raises_one_line_error(lenet, tmp_path):
    path = ex.export_ticket(lenet, random_mask(lenet, 0.05), tmp_path / "t.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays["header"].tobytes())
    header["leaves"][1]["shape"] = [784, 299]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(LthError) as err:
        ex.import_ticket(tmp_path / "bad.npz")
    assert "inconsistent" in one_line(err)

    arrays["header"] = np.frombuffer(json.dumps([1, 2]).encode(), np.uint8)
    np.savez_compressed(tmp_path / "list.npz", **arrays)
    with pytest.raises(LthError) as err:
        ex.import_ticket(tmp_path / "list.npz")
    assert "not an lth ticket" in one_line(err)

    header["leaves"][1]["shape"] = [784, 300]
    header["version"] = 99
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez_compressed(tmp_path / "v99.npz", **arrays)
    with pytest.raises(LthError) as err:
        ex.import_ticket(tmp_path / "v99.npz")
    assert "version" in one_line(err)
    assert zipfile.is_zipfile(tmp_path / "v99.npz")


def test_template_mismatch_raises_mask_error(lenet, lenet5, tmp_path):
    path = ex.export_ticket(lenet, random_mask(lenet, 0.2), tmp_path / "t.npz")
    tiny, _ = get_model("mlp_tiny", (28, 28, 1), 10).init(jax.random.key(0))
    with pytest.raises(MaskError) as err:
        ex.import_ticket(path, tiny)
    assert "does not fit" in one_line(err)
    with pytest.raises(MaskError) as err:
        ex.import_ticket(path, lenet5)
    one_line(err)
    with pytest.raises(MaskError) as err:  # same paths and shapes, another dtype
        ex.import_ticket(path, jax.tree.map(lambda p: p.astype(jnp.bfloat16), lenet))
    assert "bfloat16" in one_line(err)
    with pytest.raises(MaskError):
        ex.export_ticket(lenet, make_mask(tiny), tmp_path / "wrong.npz")
    assert not (tmp_path / "wrong.npz").exists()


# --------------------------------------------------------------------------- from a run


def test_export_from_run(tmp_path):
    import lth.analysis as la

    config = tiny_config()
    lth.run_lottery(config, runs_root=tmp_path, wandb="disabled", progress=False)
    run = la.load_run(config, root=tmp_path)

    info = ex.export_from_run(config, 2, root=tmp_path)
    assert info["path"] == run.path / "replicate_00" / "tickets" / "level_02.npz"
    assert info["sparse_bytes"] == info["path"].stat().st_size == info["sparse_compressed"]
    assert info["density"] == pytest.approx(run.records[0][2]["density"])
    params, mask = ex.import_ticket(info["path"], run.params(2))
    assert_bit_identical(apply_mask(run.params(2), run.mask(2)), params)
    assert_same_mask(run.mask(2), mask)
    assert ex.read_header(info["path"])["meta"]["level"] == 2

    out = ex.export_from_run(run.path, 0, out=tmp_path / "dense.npz")
    assert out["path"] == tmp_path / "dense.npz" and out["density"] == 1.0

    with pytest.raises(LthError) as err:
        ex.export_from_run(run.path, 7)
    assert "no level 7" in one_line(err)
    with pytest.raises(LthError) as err:
        ex.export_from_run(run.path, 0, replicate=3)
    one_line(err)


def test_export_command(tmp_path, capsys):
    from lth.cli import main
    from lth.runs.lottery import run_lottery
    from lth.tickets import import_ticket

    run_lottery(tiny_config(levels=1), runs_root=tmp_path, wandb="disabled", progress=False)
    (run,) = list(tmp_path.iterdir())
    code = main(["export", run.name, "--level", "1", "--runs", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    path = run / "replicate_00" / "tickets" / "level_01.npz"
    assert f"ticket: {path}" in out and "sparse_bytes" in out
    params, mask = import_ticket(path)
    assert params and mask
    code = main(["export", run.name, "--level", "5", "--runs", str(tmp_path)])
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
