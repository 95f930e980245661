"""Image auto-encoders: a deterministic MLP auto-encoder and a variational auto-encoder (VAE).

* :class:`MLPAutoencoder` — flatten → Dense-ReLU layers → Dense(pixels) → sigmoid; the reference's
  ``ImageMLPAE_FashionMnist_128x32x128_bs128`` is ``MLPAutoencoder((128, 32, 128))`` on Fashion-MNIST.
  The loss is the mean squared error per pixel between the reconstruction and the image.
* :class:`MLPVAE` — an MLP encoder to the mean and log-variance of a diagonal Gaussian posterior, a
  sample by the reparameterization trick, an MLP decoder to Bernoulli logits per pixel (Kingma &
  Welling, 2014; the reference's parametric family is ``tasks/parametric/image_mlp_vae.py``). The loss
  is the negative evidence lower bound per pixel, in nats:
  ``(Σ_pixels BCE(x, decoder(z)) + KL(q(z|x) ‖ N(0, I))) / #pixels``, one sample of ``z`` per image.

Weights use the haiku-style initializer of :mod:`star.tasks.image` (truncated normal, 1/√fan-in),
biases zero. Both tasks implement :class:`star.tasks.base.Task` and are pytrees (the data are leaves).
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
from star.tasks.base import Batch, Params, clip_loss
from star.tasks.image import truncated_normal_fan_in

__all__ = ["MLPAutoencoder", "MLPVAE", "AutoencoderTask", "VAETask"]


def _dense(width):
    return nn.Dense(width, kernel_init=truncated_normal_fan_in, bias_init=nn.initializers.zeros)


class MLPAutoencoder(nn.Module):
    """Flatten → [Dense → ReLU] × len(hidden_sizes) → Dense(#pixels) → sigmoid (a reconstruction)."""

    hidden_sizes: Sequence[int] = (128, 32, 128)

    @nn.compact
    def __call__(self, images):
        x = images.reshape((images.shape[0], -1))
        n = x.shape[-1]
        for width in self.hidden_sizes:
            x = nn.relu(_dense(width)(x))
        return jax.nn.sigmoid(_dense(n)(x))


class MLPVAE(nn.Module):
    """Encoder MLP → (mean, log-variance) of z; decoder MLP z → per-pixel Bernoulli logits."""

    hidden: int = 128
    latent: int = 16

    @nn.compact
    def __call__(self, images, noise):
        x = images.reshape((images.shape[0], -1))
        n = x.shape[-1]
        h = nn.relu(_dense(self.hidden)(x))
        stats = _dense(2 * self.latent)(h)
        mean, log_var = stats[:, : self.latent], stats[:, self.latent:]
        z = mean + jnp.exp(0.5 * log_var) * noise
        logits = _dense(n)(nn.relu(_dense(self.hidden)(z)))
        return logits, mean, log_var


@struct.dataclass
class AutoencoderTask:
    """Reconstruct images through a bottleneck; loss = mean squared error per pixel (in [0, 1])."""

    data: ImageDataset
    model: nn.Module = struct.field(pytree_node=False)
    name: str = struct.field(pytree_node=False)
    batch_size: int = struct.field(pytree_node=False, default=128)
    description: str = struct.field(pytree_node=False, default="")
    reference: str = struct.field(pytree_node=False, default="")
    num_classes: int = struct.field(pytree_node=False, default=10)

    def init(self, key) -> Params:
        _checks.key("key", key)
        return self.model.init(key, jnp.zeros((1, *self.data.image_shape), jnp.float32))["params"]

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        recon = self.model.apply({"params": params}, batch["image"])
        target = batch["image"].reshape((batch["image"].shape[0], -1))
        return jnp.mean(jnp.square(recon - target))

    def sample_batch(self, key, split: str = "train") -> Batch:
        return sample_batch(self.data.split(split), key, self.batch_size)

    def normalizer(self, loss: jax.Array) -> jax.Array:
        """Clip to [0, 1] (a per-pixel squared error of values in [0, 1]); NaN/inf → 1."""
        return clip_loss(loss, 1.0)


@struct.dataclass
class VAETask:
    """A VAE on images; loss = negative ELBO per pixel in nats (one reparameterized sample per image).

    The batch carries its own noise key (``batch["noise_key"]``), so the loss stays a pure function
    of ``(params, batch)`` and a batch drawn from a key is reproducible.
    """

    data: ImageDataset
    model: nn.Module = struct.field(pytree_node=False)
    name: str = struct.field(pytree_node=False)
    batch_size: int = struct.field(pytree_node=False, default=128)
    description: str = struct.field(pytree_node=False, default="")
    reference: str = struct.field(pytree_node=False, default="")
    num_classes: int = struct.field(pytree_node=False, default=2)  # Bernoulli pixels

    def init(self, key) -> Params:
        _checks.key("key", key)
        x = jnp.zeros((1, *self.data.image_shape), jnp.float32)
        return self.model.init(key, x, jnp.zeros((1, self.model.latent), jnp.float32))["params"]

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        images = batch["image"]
        noise = jax.random.normal(batch["noise_key"], (images.shape[0], self.model.latent))
        logits, mean, log_var = self.model.apply({"params": params}, images, noise)
        target = images.reshape((images.shape[0], -1))
        recon = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, target), axis=-1)
        kl = 0.5 * jnp.sum(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var, axis=-1)
        return jnp.mean(recon + kl) / target.shape[-1]

    def sample_batch(self, key, split: str = "train") -> Batch:
        k_data, k_noise = jax.random.split(key)
        batch = sample_batch(self.data.split(split), k_data, self.batch_size)
        return dict(batch, noise_key=k_noise)

    def normalizer(self, loss: jax.Array) -> jax.Array:
        """Clip to [0, 1.5 ln 2] nats per pixel (1.5 × an uninformed Bernoulli); NaN/inf → the top."""
        return clip_loss(loss, 1.5 * math.log(2.0))
