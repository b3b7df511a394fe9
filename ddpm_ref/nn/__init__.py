"""Layers with hand-written backward passes: ``out, cache = op_forward(...)``, ``op_backward(dout, cache)``.

Every layer lives in its own file and states its math and its backward terms there. Arrays are
NCHW, float32 or float64; the dtype that goes in comes out. Caches are opaque dicts that only the
matching backward reads.

This module is itself an "ops object" (see ``numpy_ops``): it has ``conv2d_forward``,
``conv2d_backward``, ``attention_forward`` and ``attention_backward``, which is all the U-Net
asks of the object it is given (``kernels.get_ops(...)`` returns another such object).

Layer: layers (imports NumPy and ``ddpm_ref.embeddings`` from the math layer, nothing above).

Plain beside fast (as CS231n keeps ``layers.py`` beside ``fast_layers.py``): ``conv_plain.py`` and
``attention_plain.py`` are loop-level versions written to be read against the equation; the tests
use them as a second reference for the fast ``conv.py`` and ``attention.py``, which say what each
of their tricks saves.
"""

from ddpm_ref.nn.activations import sigmoid, silu_backward, silu_forward
from ddpm_ref.nn.attention import attention_backward, attention_forward, softmax
from ddpm_ref.nn.attention_plain import attention_backward_plain, attention_forward_plain
from ddpm_ref.nn.backend import array_module, numpy_ops
from ddpm_ref.nn.class_embedding import class_embedding_backward, class_embedding_forward
from ddpm_ref.nn.conv import conv2d_backward, conv2d_forward, conv2d_output_size
from ddpm_ref.nn.cross_attention import cross_attention_backward, cross_attention_forward
from ddpm_ref.nn.conv_plain import conv2d_backward_plain, conv2d_forward_plain
from ddpm_ref.nn.dropout import dropout_backward, dropout_forward
from ddpm_ref.nn.groupnorm import groupnorm_backward, groupnorm_forward
from ddpm_ref.nn.groupnorm_silu import groupnorm_silu_backward, groupnorm_silu_forward
from ddpm_ref.nn.init import variance_scaling
from ddpm_ref.nn.linear import linear_backward, linear_forward
from ddpm_ref.nn.shape import add_backward, add_forward, concat_backward, concat_forward
from ddpm_ref.nn.time_mlp import time_mlp_backward, time_mlp_forward
from ddpm_ref.nn.upsample import upsample_backward, upsample_forward
from ddpm_ref.nn.upsample_conv import upsample_conv_backward, upsample_conv_forward

__all__ = [
    "array_module", "numpy_ops", "variance_scaling", "conv2d_output_size", "sigmoid", "softmax",
    "conv2d_forward", "conv2d_backward", "conv2d_forward_plain", "conv2d_backward_plain",
    "attention_forward", "attention_backward", "attention_forward_plain", "attention_backward_plain",
    "cross_attention_forward", "cross_attention_backward",
    "linear_forward", "linear_backward",
    "groupnorm_forward", "groupnorm_backward",
    "silu_forward", "silu_backward",
    "groupnorm_silu_forward", "groupnorm_silu_backward",
    "upsample_forward", "upsample_backward",
    "upsample_conv_forward", "upsample_conv_backward",
    "add_forward", "add_backward",
    "concat_forward", "concat_backward",
    "dropout_forward", "dropout_backward",
    "time_mlp_forward", "time_mlp_backward",
    "class_embedding_forward", "class_embedding_backward",
]
