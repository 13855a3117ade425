"""Dense (queries x keys) softmax attention without the map in memory, shared by the dense modules.

:func:`fused_attention` computes ``softmax(scale * q k^T) v`` for queries (G, m, Nq, E), keys (G, m, Nk, E) and
values (G, m, Nk, Ev) with ``torch.nn.functional.scaled_dot_product_attention`` (SDPA). Its fused kernels (flash /
memory-efficient on CUDA, the flash kernel on CPU) keep one block of logits at a time in fp32 and save only the row
log-sum-exp for the backward pass, so no (Nq x Nk) map is stored, and fp16/bf16 inputs cannot overflow the softmax
(what ``autocast_off``/``at_least_fp32`` guard against in the explicit form).

SDPA silently falls back to its math path, which does store the map, unless:

- the tensors are 4-D with a last dimension of stride 1 (a ``flatten(2).transpose(1, 2)`` view is not; 5-D inputs
  are not taken by the CPU kernel): only what needs it is copied;
- on CPU, E == Ev: the narrower side is zero-padded (exact: padded q/k columns add zeros to every dot product,
  padded v columns are cut off). On CUDA the memory-efficient kernel takes E != Ev, so nothing is padded there;
- ``scale`` is always passed: SDPA's default E^-0.5 (of the padded width) is not what every module uses.

Padding costs FLOPs. Where a module's E != Ev (DANet's PAM: C/8 vs C; BoTMHSA's relative logits folded into q/k:
d + H + W vs d), the module keeps its explicit form on CPU while that is faster (:func:`explicit_is_faster`): while
one map has at most 2^18 elements (BoTMHSA, up to 22x22) or 2^22 (DANet's lean one-matmul form, up to 45x45) and all
maps of the call at most 2^26 (256 MiB in fp32, which bounds the memory this costs); larger maps take the padded
fused kernel. The thresholds come from the timings in docs/benchmarks.md ("Fused or explicit on CPU"). Exported graphs
(ONNX, ``torch.jit.trace``) take the explicit form where E != Ev: ONNX below opset 23 has no fused attention, so the
exported graph computes the map either way, and the explicit form needs no padding or one-hot columns. On CUDA the
fused kernels are always taken.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.attention._common import at_least_fp32, autocast_off

EXPLICIT_MAP_ELEMENTS = 2**18  # one (Nq x Nk) map: 512 x 512, e.g. a 22x22 map attending to itself (BoTMHSA)
EXPLICIT_MAP_ELEMENTS_LEAN = 2**22  # 2048 x 2048 (45x45): a lean explicit form, one bmm + softmax (DANet's PAM)
EXPLICIT_TOTAL_ELEMENTS = 2**26  # all maps of one call: 256 MiB in fp32


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(scale * q k^T) v`` through SDPA's fused kernels (never the stored map); 4-D (G, m, N, E) inputs."""
    cut = None
    if not _exporting() and q.device.type == "cpu" and q.shape[-1] != v.shape[-1]:  # no shape tests in a trace
        e, ev = q.shape[-1], v.shape[-1]
        if e < ev:
            q, k = F.pad(q, (0, ev - e)), F.pad(k, (0, ev - e))
        else:
            v, cut = F.pad(v, (0, e - ev)), ev
    q, k, v = _last_dim_contiguous(q), _last_dim_contiguous(k), _last_dim_contiguous(v)
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out if cut is None else out[..., :cut]


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """The same with the (Nq x Nk) map stored: logits and softmax in fp32 with autocast off, weights cast back."""
    with autocast_off(q):
        logits = torch.matmul(at_least_fp32(q), at_least_fp32(k).transpose(-1, -2))
        attn = (logits if scale == 1.0 else logits * scale).softmax(-1)
    return torch.matmul(attn.to(v.dtype), v)


def explicit_is_faster(like: torch.Tensor, maps: int, n_q: int, n_k: int, widths_differ: bool,
                       lean: bool = False) -> bool:
    """Whether a module should compute the ``maps`` (n_q x n_k) maps of this call explicitly (on ``like``'s device).

    ``widths_differ``: the module's q/k width differs from its v width (a fact of the module, so that no traced
    shape is tested while exporting). True on CPU (outside export) while each map has at most
    :data:`EXPLICIT_MAP_ELEMENTS` elements (:data:`EXPLICIT_MAP_ELEMENTS_LEAN` for a ``lean`` explicit form, one
    matmul and a softmax, no bias) and all of them together at most
    :data:`EXPLICIT_TOTAL_ELEMENTS`; True while exporting (see the module docstring); False on CUDA and wherever the
    widths are equal (docs/benchmarks.md, "Fused or explicit on CPU").
    """
    if not widths_differ:
        return False
    if _exporting():
        return True
    per_map = n_q * n_k
    limit = EXPLICIT_MAP_ELEMENTS_LEAN if lean else EXPLICIT_MAP_ELEMENTS
    return like.device.type == "cpu" and per_map <= limit and maps * per_map <= EXPLICIT_TOTAL_ELEMENTS


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, widths_differ: bool) -> torch.Tensor:
    """``softmax(scale * q k^T) v`` for (G, m, Nq, E) queries, (G, m, Nk, E) keys, (G, m, Nk, Ev) values: the fused
    kernel, or :func:`explicit_attention` where :func:`explicit_is_faster` says so (``widths_differ``: E != Ev, a
    fact of the calling module)."""
    if widths_differ and (_exporting() or explicit_is_faster(q, q.shape[0] * q.shape[1], q.shape[2], k.shape[2], True)):
        return explicit_attention(q, k, v, scale)
    return fused_attention(q, k, v, scale)
