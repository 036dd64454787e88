"""The embedding MLP of Grokking Tickets (Minegishi, Iwasawa & Matsuo 2023) for modular arithmetic.

As the reference's `OnlyMLP` with `num_layers=0` (gouki510/Grokking-Tickets, model.py; the MLP
config, config/config.py: d_emb 500, d_model 48, ReLU, no LayerNorm): the operands are embedded
(p -> 500), projected (500 -> 48), summed, passed through a ReLU, projected back (48 -> 500) and
unembedded (500 -> p logits). No layer has a bias. Every matrix starts from N(0, 1 / fan_in),
untruncated (the reference's `weight_scale / sqrt(fan_in)` with weight_scale 1): fan_in is p for
the embedding, 500, 48 and 500 for the others.

Where lth differs: the reference embeds and projects a and b separately and sums the two 48-vectors;
here the input is one-hot(a) + one-hot(b) (`lth.data.modular`) and the sum comes first. Embedding
and projection are linear, so the two are the same function with the same gradients (up to float
rounding), and the model is a plain stack of dense layers (`lth.models.graph` describes it). All four
matrices are named `kernel` and pruned by the default rule, as the reference masks all four (its
pruners see every parameter with a `weight_mask` buffer: W_E, the two projections and W_U)."""

from __future__ import annotations

import flax.linen as nn
import jax

# N(0, 1 / fan_in), untruncated: the reference's normal_(std=1 / sqrt(fan_in)) for every matrix
fan_in_normal = nn.initializers.variance_scaling(1.0, "fan_in", "normal")


class EmbedMLP(nn.Module):
    """(B, p) sums of one-hots -> (B, num_classes) logits: embed, project, ReLU, project back,
    unembed; no biases."""

    num_classes: int
    embed_dim: int = 500
    hidden: int = 48

    @nn.compact
    def __call__(self, x_BxP: jax.Array, train: bool = False) -> jax.Array:
        dense = lambda width, name: nn.Dense(width, use_bias=False, kernel_init=fan_in_normal, name=name)  # noqa: E731
        h_BxH = nn.relu(dense(self.hidden, "inproj")(dense(self.embed_dim, "embed")(x_BxP)))
        return dense(self.num_classes, "unembed")(dense(self.embed_dim, "outproj")(h_BxH))
