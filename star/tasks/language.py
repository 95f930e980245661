"""Byte-level language models on a text corpus (the KJV Bible offline): recurrent nets and a transformer.

The reference's ``RNNLM_lm1bbytes_Patch32_<Cell><H>_Embed<E>`` tasks embed bytes, run a recurrent cell
over windows of 32 bytes and predict the next byte; ``TransformerLM_LM1B_5layer_<W>width`` does the same
with a causal transformer on LM1B subwords. We keep the shapes of those tasks (byte vocabulary of 256,
windows of ``seq_len`` bytes drawn uniformly from the corpus, mean next-byte cross-entropy in nats) and
train them on the text this machine has: the King James Bible (:func:`star.text_data.load_kjv`), or on LM1B
bytes itself when tensorflow-datasets can get it (:func:`star.text_data.load_lm1b`).

* :class:`RNNLM` — ``Embed(256, E)`` → ``nn.RNN(cell)`` → ``Dense(256)``; ``cell`` is ``lstm``,
  ``gru``, ``rnn`` (tanh, Elman) or ``irnn`` (ReLU with an identity recurrent matrix, Le et al., 2015).
  Recurrent weights use flax's defaults (orthogonal recurrent, LeCun-normal input kernels).
* :class:`TransformerLM` — byte and learned position embeddings, pre-LayerNorm blocks of causal
  multi-head self-attention and a 4× GELU MLP, final LayerNorm, linear read-out.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from star import _checks
from star.tasks.base import Batch, Params, clip_normalizer
from star.text_data import TextCorpus, sample_text_batch

__all__ = ["RNNLM", "TransformerLM", "LanguageModelTask", "RNN_CELLS"]

RNN_CELLS = ("lstm", "gru", "rnn", "irnn")  # gru: not in OOD_SUITE (its cost on CPU); task lm1b_gru


def _cell(kind: str, hidden: int):
    if kind == "lstm":
        return nn.OptimizedLSTMCell(hidden)
    if kind == "gru":
        return nn.GRUCell(hidden)
    if kind == "rnn":
        return nn.SimpleCell(hidden)
    if kind == "irnn":
        return nn.SimpleCell(hidden, activation_fn=nn.relu,
                             recurrent_kernel_init=lambda k, s, d=jnp.float32: jnp.eye(s[0], s[1], dtype=d),
                             kernel_init=nn.initializers.normal(0.001))
    raise ValueError(f"cell must be one of {RNN_CELLS}; got {kind!r}")


class RNNLM(nn.Module):
    """Embed bytes → recurrent cell over the window → next-byte logits."""

    cell: str = "lstm"
    hidden: int = 64
    embed: int = 32
    vocab_size: int = 256

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(self.vocab_size, self.embed)(tokens)
        x = nn.RNN(_cell(self.cell, self.hidden))(x)
        return nn.Dense(self.vocab_size)(x)


class TransformerLM(nn.Module):
    """A small causal (decoder-only) transformer over bytes, pre-LayerNorm."""

    num_layers: int = 2
    width: int = 32
    num_heads: int = 4
    max_len: int = 32
    vocab_size: int = 256

    @nn.compact
    def __call__(self, tokens):
        length = tokens.shape[-1]
        x = nn.Embed(self.vocab_size, self.width)(tokens)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (self.max_len, self.width))
        x = x + pos[:length]
        mask = nn.make_causal_mask(tokens)
        for _ in range(self.num_layers):
            h = nn.LayerNorm()(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(h, h, mask=mask)
            h = nn.LayerNorm()(x)
            x = x + nn.Dense(self.width)(nn.gelu(nn.Dense(4 * self.width)(h)))
        return nn.Dense(self.vocab_size)(nn.LayerNorm()(x))


@struct.dataclass
class LanguageModelTask:
    """Next-byte prediction on random windows of ``seq_len`` bytes; loss = mean cross-entropy (nats).

    Implements :class:`star.tasks.base.Task`; ``num_classes`` is the vocabulary size (256), which sets
    the meta-loss ceiling ``1.5 ln 256``.
    """

    corpus: TextCorpus
    model: nn.Module = struct.field(pytree_node=False)
    name: str = struct.field(pytree_node=False)
    batch_size: int = struct.field(pytree_node=False, default=32)
    seq_len: int = struct.field(pytree_node=False, default=32)
    description: str = struct.field(pytree_node=False, default="")
    reference: str = struct.field(pytree_node=False, default="")

    @property
    def num_classes(self) -> int:
        return self.corpus.vocab_size

    def init(self, key) -> Params:
        _checks.key("key", key)
        return self.model.init(key, jnp.zeros((1, self.seq_len), jnp.int32))["params"]

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        logits = self.model.apply({"params": params}, batch["inputs"])
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]))

    def sample_batch(self, key, split: str = "train") -> Batch:
        return sample_text_batch(self.corpus.split(split), key, self.batch_size, self.seq_len)

    def normalizer(self, loss: jax.Array) -> jax.Array:
        return clip_normalizer(loss, self.num_classes)
