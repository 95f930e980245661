"""Inner problems for training and meta-training: a Task protocol and a registry.

>>> task = get_task("fmnist_mlp")            # doctest: +SKIP
>>> params = task.init(jax.random.key(0))     # doctest: +SKIP
>>> batch = task.sample_batch(jax.random.key(1))
>>> task.loss(params, batch), task.normalizer(task.loss(params, batch))

Registered names (``list_tasks()``):

``fmnist_mlp``
    ``ImageMLP_FashionMnist_Relu128x128``: 784-128-128-10 ReLU MLP, batch 128 — the paper's
    meta-training task (App. B.2).
``fmnist8_mlp32``
    ``ImageMLP_FashionMnist8_Relu32``: Fashion-MNIST resized to 8×8, one hidden layer of 32 —
    small and fast, for smoke tests and the reference's multi-machine launcher.
``cifar10_conv``
    ``Conv_Cifar10_32x64x64``: the paper's ConvNet on CIFAR-10 (needs tensorflow-datasets online).
``fmnist_conv``
    The same ConvNet on 28×28 Fashion-MNIST: an *offline substitute* for ``cifar10_conv``, not a
    task of the paper.
``fmnist8_conv``
    The ConvNet's shape at a quarter width (8/16/16) on 8×8 Fashion-MNIST: the ConvNet substitute that
    PES on two CPU cores can meta-train (in-distribution chapter); not a task of the paper.
``cifar10_mlp128x128x128``
    ``ImageMLP_Cifar10_128x128x128_Relu`` (needs tensorflow-datasets online).

and the out-of-distribution suite of :mod:`star.tasks.suite` (``OOD_SUITE``: MLP variants, ConvNets, an
auto-encoder and a VAE, byte-level RNN/IRNN/LSTM and transformer language models on the KJV text, and
a task trained with ES gradients), and outside the suite the LSTM, GRU and transformer language models on
LM1B bytes (``lm1b_lstm``, ``lm1b_gru``, ``lm1b_transformer``; tensorflow-datasets online).
``TASKS[name].description`` and ``.reference`` (the ``learned_optimization`` counterpart) describe each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from star.image_data import load_cifar10, load_fashion_mnist
from star.tasks import suite
from star.tasks.base import Batch, Params, Task, clip_normalizer, meta_loss_max
from star.tasks.image import MLP, ConvNet, ImageClassificationTask, truncated_normal_fan_in
from star.tasks.suite import OOD_SUITE

__all__ = [
    "Task", "Params", "Batch", "ImageClassificationTask", "MLP", "ConvNet",
    "clip_normalizer", "meta_loss_max", "truncated_normal_fan_in",
    "TaskSpec", "TASKS", "OOD_SUITE", "get_task", "list_tasks",
]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """How to build a registered task: an image classifier from ``load`` and ``model``, or any task
    from ``build(name, description, reference, batch_size, data_dir)``; ``data`` names the data set."""

    load: Callable[..., object] | None
    model: Callable[[int], object] | None
    batch_size: int
    description: str
    reference: str
    image_size: tuple | None = None
    uses_data_dir: bool = True
    build: Callable[..., object] | None = None
    data: str = ""
    version: int = 1  # raised when the task itself changes (stored results of an older version are redone)


TASKS = {
    "fmnist_mlp": TaskSpec(
        load=load_fashion_mnist, model=lambda c: MLP((128, 128), c), batch_size=128,
        description="Fashion-MNIST 28x28, MLP 784-128-128-10 ReLU, batch 128 (paper App. B.2)",
        reference="ImageMLP_FashionMnist_Relu128x128"),
    "fmnist8_mlp32": TaskSpec(
        load=load_fashion_mnist, model=lambda c: MLP((32,), c), batch_size=128, image_size=(8, 8),
        description="Fashion-MNIST resized to 8x8, MLP 64-32-10 ReLU, batch 128 (small task)",
        reference="ImageMLP_FashionMnist8_Relu32"),
    "cifar10_conv": TaskSpec(
        load=load_cifar10, model=lambda c: ConvNet((32, 64, 64), c), batch_size=128,
        uses_data_dir=False,
        description="CIFAR-10 32x32x3, ConvNet 3x3 convs 32/64/64 strides 2/1/1, ReLU, global "
                    "average pooling, linear head, batch 128 (paper App. B.2)",
        reference="Conv_Cifar10_32x64x64"),
    "fmnist_conv": TaskSpec(
        load=load_fashion_mnist, model=lambda c: ConvNet((32, 64, 64), c), batch_size=128,
        description="OFFLINE SUBSTITUTE for cifar10_conv: the same ConvNet (32/64/64, strides "
                    "2/1/1, global average pooling) on Fashion-MNIST 28x28x1, batch 128",
        reference="Conv_Cifar10_32x64x64 architecture on Fashion-MNIST (not a paper task)"),
    "fmnist8_conv": TaskSpec(
        load=load_fashion_mnist, model=lambda c: ConvNet((8, 16, 16), c, im2col=True), batch_size=32,
        image_size=(8, 8),
        description="OFFLINE CPU-SCALE SUBSTITUTE for cifar10_conv: the paper's ConvNet shape (3x3 convs, "
                    "strides 2/1/1, ReLU, global average pooling) at a quarter width (8/16/16) on "
                    "Fashion-MNIST resized to 8x8, batch 32",
        reference="Conv_Cifar10_32x64x64 architecture at quarter width on 8x8 Fashion-MNIST (not a paper task)"),
    "cifar10_mlp128x128x128": TaskSpec(
        load=load_cifar10, model=lambda c: MLP((128, 128, 128), c), batch_size=128,
        uses_data_dir=False, data="CIFAR-10 (tensorflow-datasets, online)",
        description="CIFAR-10 32x32x3, MLP 3072-128-128-128-10 ReLU, batch 128",
        reference="ImageMLP_Cifar10_128x128x128_Relu"),
}
for _name in ("fmnist_mlp", "fmnist8_mlp32", "fmnist_conv", "fmnist8_conv"):
    TASKS[_name] = dataclasses.replace(TASKS[_name], data=suite.FMNIST)
TASKS["cifar10_conv"] = dataclasses.replace(TASKS["cifar10_conv"], data="CIFAR-10 (tensorflow-datasets, online)")
for _name, _s in suite.SPECS.items():
    TASKS[_name] = TaskSpec(load=None, model=None, batch_size=_s.batch_size, description=_s.description,
                            reference=_s.reference, build=_s.build, data=_s.data,
                            uses_data_dir=_s.uses_data_dir, version=_s.version)


def list_tasks() -> list:
    """The registered task names."""
    return sorted(TASKS)


def get_task(name: str, *, batch_size: int | None = None, data_dir=None) -> Task:
    """Build the registered task ``name`` (see the module docstring for the list).

    Args:
        name: a key of :data:`TASKS`.
        batch_size: override the task's batch size (default: the task's own, 128 for the paper's).
        data_dir: a folder with the Fashion-MNIST idx files (default: see :mod:`star.image_data`).

    Raises:
        ValueError: unknown ``name``, a non-positive ``batch_size``, or ``data_dir`` given for a
            task whose data only come from tensorflow-datasets.
        star.data_sources.DataUnavailableError: the data set is not available on this machine.
    """
    if name not in TASKS:
        raise ValueError(f"name must be one of {', '.join(list_tasks())}; got {name!r}")
    spec = TASKS[name]
    if batch_size is None:
        batch_size = spec.batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if data_dir is not None and not spec.uses_data_dir:
        raise ValueError(f"data_dir is not used by task {name!r} (its data come from "
                         f"tensorflow-datasets); got data_dir={str(data_dir)!r}")
    if spec.build is not None:
        return spec.build(name, spec.description, spec.reference, batch_size, data_dir)
    kwargs = {"image_size": spec.image_size}
    if spec.uses_data_dir:
        kwargs["data_dir"] = data_dir
    data = spec.load(**kwargs)
    return ImageClassificationTask(
        data=data, model=spec.model(data.num_classes), name=name, batch_size=batch_size,
        description=spec.description, reference=spec.reference)
