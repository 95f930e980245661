"""The out-of-distribution task suite (App. B.3, C.3): 16 tasks far from and near the meta-training task.

The paper evaluates its optimizers, meta-trained on a Fashion-MNIST MLP, on 16 tasks of
``learned_optimization`` ranging from larger MLPs to ConvNets, auto-encoders, recurrent and transformer
language models and a task trained with ES gradients (App. B.3; Figs. App.5–App.6 name them only in
subplot titles, which are not legible). We build 16 tasks of the same kinds on the real data this
machine has offline — Fashion-MNIST (Debian ``dataset-fashion-mnist``), the UCI handwritten digits
(bundled with scikit-learn) and the King James Bible (Debian ``bible-kjv``) — each named after the
``learned_optimization`` task it mirrors (its ``reference``). Where our task differs from that task
(another data set, a smaller width to fit two CPU cores), the description says so.

:data:`SPECS` holds the tasks that are new here; :data:`OOD_SUITE` lists all 16 in the order of the
chapter's figures (the first, ``fmnist_mlp``, is registered in :mod:`star.tasks` already).

Outside the suite, :data:`SPECS` also registers the byte-level language models on their reference's own
data, LM1B (``lm1b_lstm``, ``lm1b_gru``, ``lm1b_transformer``): tensorflow-datasets downloads it when
online (:func:`star.text_data.load_lm1b`); offline building them fails at once with a
:class:`star.data_sources.DataUnavailableError` saying how to get it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from star.image_data import load_digits, load_fashion_mnist
from star.tasks.autoencoder import MLPVAE, AutoencoderTask, MLPAutoencoder, VAETask
from star.tasks.es import ESWrappedTask
from star.tasks.image import MLP, ConvNet, ImageClassificationTask
from star.tasks.language import RNNLM, LanguageModelTask, TransformerLM
from star.text_data import load_kjv, load_lm1b

__all__ = ["SuiteSpec", "SPECS", "OOD_SUITE"]

FMNIST = "Fashion-MNIST (Debian dataset-fashion-mnist)"
DIGITS = "UCI handwritten digits 8x8 (scikit-learn)"
KJV = "King James Bible bytes (Debian bible-kjv)"
LM1B = "LM1B bytes (tensorflow-datasets, online)"


@dataclasses.dataclass(frozen=True)
class SuiteSpec:
    """A task of the suite: ``build(batch_size, data_dir)`` returns it; ``batch_size`` is its default;
    ``uses_data_dir`` is False for tasks whose data come from tensorflow-datasets only."""

    build: Callable
    batch_size: int
    description: str
    reference: str
    data: str
    uses_data_dir: bool = True
    version: int = 1  # raised when the task itself changes (stored results of an older version are redone)


def _image(loader, model, image_size=None, loss_type="cross_entropy"):
    def build(name, description, reference, batch_size, data_dir=None):
        if loader is load_fashion_mnist:
            data = loader(data_dir=data_dir, image_size=image_size)
        else:
            data = loader()
        return ImageClassificationTask(data=data, model=model, name=name, batch_size=batch_size,
                                       description=description, reference=reference, loss_type=loss_type)
    return build


def _ae(cls, model):
    def build(name, description, reference, batch_size, data_dir=None):
        return cls(data=load_fashion_mnist(data_dir=data_dir), model=model, name=name,
                   batch_size=batch_size, description=description, reference=reference)
    return build


def _lm(model, seq_len=32, load=load_kjv):
    def build(name, description, reference, batch_size, data_dir=None):
        del data_dir  # KJV: $STAR_DATA_DIR/kjv.txt or the Debian bible program; LM1B: tensorflow-datasets
        return LanguageModelTask(corpus=load(), model=model, name=name, batch_size=batch_size,
                                 seq_len=seq_len, description=description, reference=reference)
    return build


def _es(num_pairs):
    def build(name, description, reference, batch_size, data_dir=None):
        base = ImageClassificationTask(data=load_fashion_mnist(data_dir=data_dir, image_size=(8, 8)),
                                       model=MLP((32,), 10), name="fmnist8_mlp32", batch_size=batch_size)
        return ESWrappedTask(base=base, name=name, num_pairs=num_pairs, std=0.01,
                             description=description, reference=reference)
    return build


_D = {}


def _add(name, batch_size, description, reference, data, build, uses_data_dir=True, version=1):
    _D[name] = SuiteSpec(build=build, batch_size=batch_size, description=description,
                         reference=reference, data=data, uses_data_dir=uses_data_dir, version=version)


_add("fmnist_mlp_tanh", 128, "Fashion-MNIST 28x28, MLP 784-128-128-128-10 with tanh, batch 128",
     "ImageMLP_Cifar10_128x128x128_Tanh_bs128 (architecture; Fashion-MNIST instead of CIFAR-10)", FMNIST,
     _image(load_fashion_mnist, MLP((128, 128, 128), 10, activation="tanh")))
_add("fmnist_mlp_layernorm", 128,
     "Fashion-MNIST 28x28, MLP 784-128-128-128-10 with LayerNorm before each ReLU, batch 128",
     "ImageMLP_Cifar10_128x128x128_LayerNorm_Relu (architecture; Fashion-MNIST instead of CIFAR-10)",
     FMNIST, _image(load_fashion_mnist, MLP((128, 128, 128), 10, layer_norm=True)))
_add("fmnist_mlp_mse", 128,
     "Fashion-MNIST 28x28, MLP 784-128-128-128-10 ReLU trained with squared error to one-hot labels (mean over "
     "the batch and the 10 classes), batch 128",
     "ImageMLP_Cifar10_128x128x128_Relu_MSE (architecture; Fashion-MNIST instead of CIFAR-10)",
     FMNIST, _image(load_fashion_mnist, MLP((128, 128, 128), 10), loss_type="mse"),
     version=2)  # version 1 summed the squared error over the classes (10x the reference's loss)
_add("fmnist16_mlp256x256", 128, "Fashion-MNIST resized to 16x16, MLP 256-256-256-10 ReLU, batch 128",
     "ImageMLP_Cifar10_256x256_Relu (architecture; Fashion-MNIST 16x16 instead of CIFAR-10 32x32)", FMNIST,
     _image(load_fashion_mnist, MLP((256, 256), 10), image_size=(16, 16)))
_add("digits_mlp32", 128, "UCI digits 8x8, MLP 64-32-10 ReLU, batch 128",
     "ImageMLP_Cifar10_8_Relu32 (architecture on 8x8 images; UCI digits instead of CIFAR-10)", DIGITS,
     _image(load_digits, MLP((32,), 10)))
_add("digits_mlp128x128x128", 128, "UCI digits 8x8, MLP 64-128-128-128-10 ReLU, batch 128",
     "ImageMLP_Mnist_128x128x128_Relu (architecture; UCI 8x8 digits instead of MNIST 28x28)", DIGITS,
     _image(load_digits, MLP((128, 128, 128), 10)))
_add("digits_conv", 64, "UCI digits 8x8, ConvNet 3x3 convs 16/32/32 (strides 2/1/1) ReLU, global "
     "average pooling, batch 64", "Conv_Cifar10_32x64x64 (architecture at half width on 8x8 digits)",
     DIGITS, _image(load_digits, ConvNet((16, 32, 32), 10, im2col=True)))
_add("fmnist16_conv", 64, "Fashion-MNIST resized to 16x16, ConvNet 3x3 convs 16/32/32 (strides 2/1/1) "
     "ReLU, global average pooling, batch 64",
     "Conv_Cifar10_16_32x64x64 (16x16 images; half width; Fashion-MNIST instead of CIFAR-10)", FMNIST,
     _image(load_fashion_mnist, ConvNet((16, 32, 32), 10, im2col=True), image_size=(16, 16)))
_add("fmnist_ae", 128, "Fashion-MNIST 28x28 MLP auto-encoder 784-128-32-128-784 (ReLU, sigmoid output), "
     "mean squared error per pixel, batch 128", "ImageMLPAE_FashionMnist_128x32x128_bs128", FMNIST,
     _ae(AutoencoderTask, MLPAutoencoder((128, 32, 128))))
_add("fmnist_vae", 128, "Fashion-MNIST 28x28 VAE, encoder 784-128-(2x16), decoder 16-128-784 Bernoulli "
     "logits, negative ELBO per pixel (nats), batch 128",
     "ImageMLPVAE (parametric family tasks/parametric/image_mlp_vae.py; no fixed task)", FMNIST,
     _ae(VAETask, MLPVAE(128, 16)))
for _c, _ref in (("lstm", "LSTM128"), ("rnn", "VanillaRNN128"), ("irnn", "IRNN128")):
    _add(f"kjv_{_c}", 16,
         f"KJV bytes, windows of 32, byte embedding 32, {_c.upper()} with 64 units, next-byte "
         f"cross-entropy, batch 16",
         f"RNNLM_lm1bbytes_Patch32_{_ref}_Embed64 (half width; KJV instead of LM1B)", KJV,
         _lm(RNNLM(_c, 64, 32)))
_add("kjv_transformer", 16, "KJV bytes, windows of 32, causal transformer 2 layers x width 32, 4 heads, "
     "next-byte cross-entropy, batch 16",
     "TransformerLM_LM1B_5layer_32width (2 layers instead of 5; KJV bytes instead of LM1B subwords)", KJV,
     _lm(TransformerLM(2, 32, 4, 32)))
_add("es_fmnist8_mlp32", 128, "Fashion-MNIST 8x8 MLP 64-32-10 (the meta-training task) trained with "
     "antithetic ES gradients (1 pair, std 0.01) instead of backpropagation, batch 128",
     "ESWrapped_1pair_ImageMLP_FashionMnist8_Relu32", FMNIST, _es(num_pairs=1))

# Not in OOD_SUITE: the same language models on the reference's own data, LM1B, when tfds can get it.
for _c, _ref in (("lstm", "LSTM128"), ("gru", "GRU128")):
    _add(f"lm1b_{_c}", 16,
         f"LM1B bytes (first 100 000 training sentences), windows of 32, byte embedding 32, {_c.upper()} "
         f"with 64 units, next-byte cross-entropy, batch 16",
         f"RNNLM_lm1bbytes_Patch32_{_ref}_Embed64 (half width, as kjv_lstm)", LM1B,
         _lm(RNNLM(_c, 64, 32), load=load_lm1b), uses_data_dir=False)
_add("lm1b_transformer", 16, "LM1B bytes (first 100 000 training sentences), windows of 32, causal "
     "transformer 2 layers x width 32, 4 heads, next-byte cross-entropy, batch 16",
     "TransformerLM_LM1B_5layer_32width (2 layers instead of 5; LM1B bytes instead of subwords)", LM1B,
     _lm(TransformerLM(2, 32, 4, 32), load=load_lm1b), uses_data_dir=False)

SPECS: dict = dict(_D)

OOD_SUITE = (
    "fmnist_mlp", "fmnist_mlp_tanh", "fmnist_mlp_layernorm", "fmnist_mlp_mse", "fmnist16_mlp256x256",
    "digits_mlp32", "digits_mlp128x128x128", "digits_conv", "fmnist16_conv", "fmnist_ae", "fmnist_vae",
    "kjv_lstm", "kjv_rnn", "kjv_irnn", "kjv_transformer", "es_fmnist8_mlp32",
)
