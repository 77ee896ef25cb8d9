"""Text towers: prompt token embeddings in, one feature per prompt out.

Prompts arrive as :class:`PromptEmbeddings`, split into a *prefix* shared by every rank (the start token and
the context before the rank tokens) and a per-rank *suffix* (rank tokens, the rest, ``"."`` and the end
token).

CLIP's text tower is causal and pools the end token (EOT), which gives two exact shortcuts over the
reference's 77-position pass (reference notes §1.3):

* positions after EOT cannot reach it, so only the real length is encoded;
* the prefix sees only itself, so its hidden states are the same for every rank: they are computed once per
  layer and every suffix attends to the prefix's keys/values (a KV cache).

``path="naive"`` keeps the reference computation (all positions, open_clip's own transformer) for tests and
benchmarks; ``"truncated"`` applies only the first shortcut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

TextPath = Literal["shared_prefix", "truncated", "naive"]


@dataclass
class PromptEmbeddings:
    """Token embeddings of the C rank prompts.

    Attributes:
        prefix: (P, D) embeddings shared by every prompt (P >= 1: it holds at least the start token).
        suffix: (C, S, D) per-prompt embeddings that follow the prefix.
        eot_index: (C,) position of the pooled end token in the full sequence (P <= eot_index < P + S).
        pad: (D,) embedding placed after the prompt by the full-length path (CLIP pads with token id 0).
    """

    prefix: torch.Tensor
    suffix: torch.Tensor
    eot_index: torch.Tensor
    pad: torch.Tensor

    @property
    def num_prompts(self) -> int:
        return self.suffix.shape[0]

    @property
    def length(self) -> int:
        """P + S: the number of positions that carry prompt tokens."""
        return self.prefix.shape[0] + self.suffix.shape[1]

    def full(self, context_length: int | None = None) -> torch.Tensor:
        """(C, context_length, D) sequences as the reference builds them (pad embedding after the prompt)."""
        c = self.num_prompts
        parts = [self.prefix.unsqueeze(0).expand(c, -1, -1), self.suffix]
        if context_length is not None:
            if context_length < self.length:
                raise ValueError(f"prompts have {self.length} tokens; the text tower takes at most {context_length}")
            parts.append(self.pad.expand(c, context_length - self.length, -1))
        return torch.cat(parts, dim=1)


class ClipTextTower(nn.Module):
    """CLIP's (frozen by default) text transformer over prompt embeddings -> (C, E) text features.

    Args:
        clip_model: an open_clip ``CLIP`` (text parts on the model) or ``CustomTextCLIP`` with a
        ``TextTransformer``. tokenizer: the BPE tokenizer (``encode(str) -> list[int]``, ``sot_token_id``,
        ``eot_token_id``). path: which computation to use (see the module docstring); all three give the same
        features. freeze: stop gradients into the tower's own weights (gradients still reach the prompt
        embeddings).
    """

    # open_clip's (untyped) parts, declared for the type checker
    token_embedding: nn.Embedding
    positional_embedding: torch.Tensor
    transformer: Any
    ln_final: nn.Module
    text_projection: Any
    attn_mask: torch.Tensor

    def __init__(self, clip_model: nn.Module, tokenizer, path: TextPath = "shared_prefix", freeze: bool = True):
        super().__init__()
        src: Any = clip_model.text if hasattr(clip_model, "text") else clip_model
        for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
            if not hasattr(src, attr):
                raise TypeError(f"{type(clip_model).__name__} has no CLIP text transformer (missing {attr!r})")
        if getattr(src, "attn_mask", None) is None or getattr(src, "text_pool_type", "argmax") != "argmax":
            raise TypeError("ClipTextTower needs a causal text tower that pools the end token (CLIP's design)")
        self.token_embedding = src.token_embedding
        self.positional_embedding = src.positional_embedding
        self.transformer = src.transformer
        self.ln_final = src.ln_final
        self.text_projection = src.text_projection
        self.register_buffer("attn_mask", src.attn_mask.clone(), persistent=False)
        self.tokenizer = tokenizer
        self.path: TextPath = path
        self.width = int(self.token_embedding.weight.shape[1])
        self.context_length = int(self.positional_embedding.shape[0])
        proj = self.text_projection
        self.output_dim = int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])
        self.sot_id = int(tokenizer.sot_token_id)
        self.eot_id = int(tokenizer.eot_token_id)
        self.pad_id = 0
        self.period_ids = list(tokenizer.encode("."))
        if freeze:
            for p in self.parameters():
                p.requires_grad_(False)

    # -- vocabulary ------------------------------------------------------------------------------------------
    def encode_words(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens (underscores read as spaces)."""
        return list(self.tokenizer.encode(text.replace("_", " ")))

    def embed_ids(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        """Token embeddings, (..., D), detached from the (frozen) embedding table."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.token_embedding.weight.device)
        return self.token_embedding(ids).detach()

    # -- encoders --------------------------------------------------------------------------------------------
    def forward(self, prompts: PromptEmbeddings) -> torch.Tensor:
        """(C, E) unnormalised text features of the prompts."""
        if prompts.length > self.context_length:
            raise ValueError(f"prompts have {prompts.length} tokens; this text tower takes at most "
                             f"{self.context_length}")
        if self.path == "naive":
            return self.forward_full(prompts, self.context_length)
        if self.path == "truncated":
            return self.forward_full(prompts, None)
        if not all(_is_plain_block(b) for b in self.transformer.resblocks):
            return self.forward_full(prompts, None)
        return self.forward_shared_prefix(prompts)

    def _project(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.text_projection is None:
            return pooled
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(pooled)
        return pooled @ self.text_projection

    def forward_full(self, prompts: PromptEmbeddings, context_length: int | None) -> torch.Tensor:
        """Reference computation through open_clip's transformer; ``None`` = only the real length."""
        x = prompts.full(context_length)
        n = x.shape[1]
        x = x + self.positional_embedding[:n]
        x = self.transformer(x, attn_mask=self.attn_mask[:n, :n])
        x = self.ln_final(x)
        pooled = x[torch.arange(x.shape[0], device=x.device), prompts.eot_index]
        return self._project(pooled)

    def forward_shared_prefix(self, prompts: PromptEmbeddings) -> torch.Tensor:
        """Exact fast path: the prefix once per layer, every suffix attending to its cached keys/values.

        Prefix and suffix rows share one (P + C*S, D) matrix, so every linear layer is one matrix product;
        only attention treats them apart. The prefix keys/values are never copied per prompt, and in the last
        layer only the pooled end token goes past the key/value projection: nothing else reaches the output.
        """
        p, (c, s, d) = prompts.prefix.shape[0], prompts.suffix.shape
        dev = prompts.suffix.device
        pos = self.positional_embedding
        rows = torch.arange(c, device=dev)
        eot = prompts.eot_index.to(dev) - p  # (C,) end-token position within the suffix
        # suffix token j sees the whole prefix and suffix tokens 0..j
        causal = torch.ones(s, s, dtype=torch.bool, device=dev).tril()
        eot_sees = torch.arange(s, device=dev)[None, :] <= eot[:, None]  # (C, S)
        eot_sees = eot_sees[None, :, None, :]  # (1, C, 1, S): mask of the end-token query
        x = torch.cat([prompts.prefix + pos[:p], (prompts.suffix + pos[p : p + s]).reshape(c * s, d)])
        blocks = list(self.transformer.resblocks)
        for i, block in enumerate(blocks):
            attn: nn.MultiheadAttention = block.attn
            h = attn.num_heads
            qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)  # (P + C*S, 3D)
            qp, kp, vp = qkv[:p].view(p, 3, h, d // h).permute(1, 2, 0, 3)  # each (H, P, dh)
            q, k, v = qkv[p:].view(c, s, 3, h, d // h).permute(2, 3, 0, 1, 4)  # each (H, C, S, dh)
            if i == len(blocks) - 1:  # only the pooled end token reaches the output
                x = x[p:].view(c, s, d)[rows, eot]  # (C, D)
                attended = _attend_with_prefix(q[:, rows, eot].unsqueeze(2), k, v, kp, vp, eot_sees)
                attended = attended.permute(1, 2, 0, 3).reshape(c, d)
            else:
                own = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)  # (H, P, dh)
                shared = _attend_with_prefix(q, k, v, kp, vp, causal)  # (H, C, S, dh)
                attended = torch.cat([own.transpose(0, 1).reshape(p, d), shared.permute(1, 2, 0, 3).reshape(-1, d)])
            x = x + block.ls_1(attn.out_proj(attended))
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        pooled = self.ln_final(x if blocks else x[p:].view(c, s, d)[rows, eot])
        return self._project(pooled)


def _is_plain_block(block: nn.Module) -> bool:
    attn = getattr(block, "attn", None)
    return (
        isinstance(attn, nn.MultiheadAttention)
        and attn.batch_first
        and attn.in_proj_weight is not None
        and not hasattr(block, "ln_1_kv")
        and all(hasattr(block, a) for a in ("ln_1", "ln_2", "mlp", "ls_1", "ls_2"))
    )


def _attend_with_prefix(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_prefix: torch.Tensor, v_prefix: torch.Tensor,
    allowed: torch.Tensor,
) -> torch.Tensor:
    """Softmax attention of suffix queries over [shared prefix keys, own suffix keys].

    q: (H, C, Q, dh); k, v: (H, C, S, dh); k_prefix, v_prefix: (H, P, dh), shared by all C prompts;
    allowed: boolean mask over the suffix keys, broadcastable to (H, C, Q, S). Returns (H, C, Q, dh).

    The prefix is contracted with all C * Q queries in one matmul per head instead of being copied C times, as
    concatenating keys for a fused attention kernel would; at C = 100 that copy costs more than the attention.
    """
    h, c, nq, dh = q.shape
    p = k_prefix.shape[1]
    scores_prefix = torch.matmul(q.reshape(h, c * nq, dh), k_prefix.transpose(1, 2)).view(h, c, nq, p)
    scores_own = torch.matmul(q, k.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
    scores = torch.cat([scores_prefix, scores_own], dim=-1) * dh**-0.5
    # normalise after the value product, as the fused kernel of the full path does (keeps rounding alike). The
    # shift cancels in the ratio, so its gradient is zero: detaching it is exact, saves backward work and
    # avoids NaN gradients that torch.compile's bf16 CPU code gives for amax of a concatenation (torch 2.14).
    weights = (scores - scores.amax(dim=-1, keepdim=True).detach()).exp()
    out = torch.matmul(weights[..., :p].reshape(h, c * nq, p), v_prefix).view(h, c, nq, dh)
    return (out + torch.matmul(weights[..., p:], v)) / weights.sum(dim=-1, keepdim=True)
