"""Image-classification tasks: the paper's in-distribution problems (App. B.2) in flax.

* ``MLP``: flatten, Dense-ReLU layers, linear head — ``ImageMLP_FashionMnist_Relu128x128`` is
  ``MLP((128, 128))`` on 28×28 Fashion-MNIST with batch 128.
* ``ConvNet``: 3×3 convolutions (``SAME`` padding) with strides 2, 1, 1…, ReLU, global average
  pooling and a linear head — ``Conv_Cifar10_32x64x64`` is ``ConvNet((32, 64, 64))``.

Initialization follows the reference's haiku modules: every weight is a standard normal truncated
to ±2 and scaled by ``1/√fan-in`` (so its realized standard deviation is ``0.8796/√fan-in``), every
bias is zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from star import _checks
from star.image_data import ImageDataset, sample_batch
from star.tasks.base import Batch, Params, clip_normalizer

__all__ = ["truncated_normal_fan_in", "MLP", "ConvNet", "ImageClassificationTask",
           "TRUNCATED_NORMAL_STD", "ACTIVATIONS", "LOSSES", "PatchConv"]

ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh}
LOSSES = ("cross_entropy", "mse")

# Standard deviation of a standard normal truncated to [-2, 2].
TRUNCATED_NORMAL_STD = 0.8796256610342398


def truncated_normal_fan_in(key, shape, dtype=jnp.float32):
    """Haiku's default weight initializer: ``TruncatedNormal(stddev=1/√fan_in)``, cut at ±2 stddev.

    ``fan_in`` is the product of all but the last dimension (inputs of a Dense kernel, or
    ``kh·kw·c_in`` of a convolution kernel).
    """
    fan_in = math.prod(shape[:-1])
    return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) / math.sqrt(fan_in)


class MLP(nn.Module):
    """Flatten → [Dense → (LayerNorm) → activation] × len(hidden_sizes) → Dense(num_classes).

    ``activation`` is ``"relu"`` (default, the paper's tasks) or ``"tanh"``; ``layer_norm`` adds a
    LayerNorm (learned scale and offset) before each activation, as the reference's
    ``ImageMLP_*_LayerNorm_*`` tasks do.
    """

    hidden_sizes: Sequence[int]
    num_classes: int = 10
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, images):
        act = ACTIVATIONS[self.activation]
        x = images.reshape((images.shape[0], -1))
        for width in self.hidden_sizes:
            x = nn.Dense(width, kernel_init=truncated_normal_fan_in, bias_init=nn.initializers.zeros)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.num_classes, kernel_init=truncated_normal_fan_in,
                        bias_init=nn.initializers.zeros)(x)


class PatchConv(nn.Module):
    """A 3×3 ``SAME`` convolution computed as image patches times a matrix (im2col).

    Same parameters (``kernel`` ``[3, 3, c_in, c_out]``, ``bias``) and the same function as
    ``nn.Conv``; under ``jax.vmap`` over parameters it becomes a batched matrix product, which XLA
    runs far faster on a CPU than the grouped convolution that a vmapped ``nn.Conv`` turns into.
    """

    features: int
    strides: tuple = (1, 1)

    @nn.compact
    def __call__(self, x):
        c_in = x.shape[-1]
        kernel = self.param("kernel", truncated_normal_fan_in, (3, 3, c_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        patches = jax.lax.conv_general_dilated_patches(
            x, (3, 3), self.strides, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        # patch features are ordered (c_in, kh, kw)
        w = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(c_in * 9, self.features)
        return patches @ w + bias


class ConvNet(nn.Module):
    """[3×3 Conv (stride 2 first, then 1) → ReLU] per channel count → mean over H, W → Dense.

    ``im2col=True`` computes each convolution as :class:`PatchConv` (same function and parameters,
    fast when many runs are vmapped); ``activation`` is ``"relu"`` (default) or ``"tanh"``.
    """

    channels: Sequence[int] = (32, 64, 64)
    num_classes: int = 10
    activation: str = "relu"
    im2col: bool = False

    @nn.compact
    def __call__(self, images):
        act = ACTIVATIONS[self.activation]
        x = images
        for i, c in enumerate(self.channels):
            stride = 2 if i == 0 else 1
            if self.im2col:
                x = act(PatchConv(c, (stride, stride), name=f"Conv_{i}")(x))
                continue
            x = act(nn.Conv(c, (3, 3), strides=(stride, stride), padding="SAME",
                                kernel_init=truncated_normal_fan_in,
                                bias_init=nn.initializers.zeros)(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=truncated_normal_fan_in,
                        bias_init=nn.initializers.zeros)(x)


@struct.dataclass
class ImageClassificationTask:
    """A classifier trained with mean softmax cross-entropy on batches drawn from ``data``.

    Implements :class:`star.tasks.base.Task`. It is a pytree whose leaves are the data arrays;
    pass it to jitted functions as an argument (``jax.jit(f)(task, ...)``).
    """

    data: ImageDataset
    model: nn.Module = struct.field(pytree_node=False)
    name: str = struct.field(pytree_node=False)
    batch_size: int = struct.field(pytree_node=False, default=128)
    description: str = struct.field(pytree_node=False, default="")
    reference: str = struct.field(pytree_node=False, default="")
    loss_type: str = struct.field(pytree_node=False, default="cross_entropy")

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def image_shape(self) -> tuple:
        return self.data.image_shape

    def init(self, key) -> Params:
        """Parameters (a dict of Dense/Conv kernels and biases) drawn from ``key``."""
        _checks.key("key", key)
        dummy = jnp.zeros((1, *self.image_shape), jnp.float32)
        return self.model.init(key, dummy)["params"]

    def logits(self, params: Params, images: jax.Array) -> jax.Array:
        return self.model.apply({"params": params}, images)

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        """Mean softmax cross-entropy of the batch (the training loss of App. B.2).

        With ``loss_type="mse"``: the squared error between the logits and the one-hot labels, averaged over
        the batch and the classes, as the reference's ``*_MSE`` tasks (``_MLPImageTaskMSE``:
        ``jnp.mean(jnp.square(logits - labels))``).
        """
        logits = self.logits(params, batch["image"])
        if self.loss_type == "mse":
            onehot = jax.nn.one_hot(batch["label"], logits.shape[-1], dtype=logits.dtype)
            return jnp.mean(jnp.square(logits - onehot))
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))

    def loss_and_accuracy(self, params: Params, batch: Batch):
        """Per-example cross-entropy and correctness (``[B]`` each), for evaluation."""
        logits = self.logits(params, batch["image"])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        return ce, (jnp.argmax(logits, axis=-1) == batch["label"]).astype(jnp.float32)

    def sample_batch(self, key, split: str = "train") -> Batch:
        """``batch_size`` examples of ``split`` drawn uniformly from ``key`` (see
        :func:`star.image_data.sample_batch`)."""
        return sample_batch(self.data.split(split), key, self.batch_size)

    def normalizer(self, loss: jax.Array) -> jax.Array:
        """Clip to ``[0, 1.5 ln(num_classes)]``, NaN/inf → the maximum (appendix "Outer loop and task losses")."""
        return clip_normalizer(loss, self.num_classes)

    def num_params(self, params: Params) -> int:
        return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
