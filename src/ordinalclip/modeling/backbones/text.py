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

Towers without a causal mask (SigLIP, CLIPA, MobileCLIP) or that pool a position other than the end token (the
last or first position, CoCa's appended class token) see every position, padding included, so neither
shortcut is
exact for them: they always take the full-length path, with the prompt padded the way the model's own
tokenizer
pads (:class:`TokenLayout`) and pooled the way the model pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

TextPath = Literal["shared_prefix", "truncated", "naive"]


@dataclass
class PromptEmbeddings:
    """Token embeddings of the C rank prompts.

    Attributes:
        prefix: (P, D) embeddings shared by every prompt (the start token, if the tokenizer has one, and the
            context before the rank tokens; P may be 0).
        suffix: (C, S, D) per-prompt embeddings that follow the prefix.
        eot_index: (C,) position of the end token in the full sequence (P <= eot_index < P + S); the last real
            token where the tokenizer adds no end token.
        pad: (D,) embedding placed after the prompt by the full-length path (the tokenizer's pad id: 0 for
            CLIP).
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
                raise ValueError(
                    f"prompts have {self.length} tokens; the text tower takes at most {context_length}"
                )
            parts.append(self.pad.expand(c, context_length - self.length, -1))
        return torch.cat(parts, dim=1)


class TokenLayout:
    """How a model's own tokenizer lays out a text: start ids, the words' ids, end ids, then pad ids.

    Read off the tokenizer by tokenising a probe text, so it holds for open_clip's BPE ``SimpleTokenizer``
    (SOT,
    EOT, pad 0) as for Hugging Face tokenizers (T5/Gemma-style: no start token, ``</s>`` at the end, their
    own pad
    id, maybe the same as the end id) and for options such as ``strip_sep_token``.

    Args:
        tokenizer: an open_clip tokenizer (``SimpleTokenizer``, ``HFTokenizer``, ``SigLipTokenizer``):
            callable on a
            list of texts -> (N, context_length) ids.
    """

    PROBE = "a photo"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.context_length = int(tokenizer.context_length)
        words = self.encode_words(self.PROBE)
        full = [int(i) for i in tokenizer([self.PROBE])[0].tolist()]
        at = next((i for i in range(len(full) - len(words) + 1) if full[i : i + len(words)] == words), None)
        if not words or at is None:
            raise TypeError(
                f"cannot read the token layout of {type(tokenizer).__name__}: {self.PROBE!r} -> {full}, "
                f"its words alone -> {words}"
            )
        hf = getattr(tokenizer, "tokenizer", None)
        # a Hugging Face tokenizer's unpadded length says where the padding starts; open_clip's BPE tokenizer
        # writes [SOT] words [EOT], then zeros
        used = len(hf(self._clean(self.PROBE)).input_ids) if hf is not None else len(words) + 2
        self.start_ids: list[int] = full[:at]
        self.end_ids: list[int] = full[at + len(words) : used]
        self.pad_id: int = full[used] if used < len(full) else 0
        # "." as it tokenises after a word (SentencePiece gives a bare "." there but "▁." alone;
        # canonicalising
        # tokenizers drop it)
        word, dotted = self.encode_words("a"), self.encode_words("a.")
        after_word = dotted[len(word) :] if dotted[: len(word)] == word else None
        self.period_ids: list[int] = after_word if after_word is not None else self.encode_words(".")

    def _clean(self, text: str) -> str:
        clean = getattr(self.tokenizer, "clean_fn", None)
        if clean is None:  # SigLipTokenizer canonicalises inline
            from open_clip.tokenizer import basic_clean, canonicalize_text

            return canonicalize_text(basic_clean(text))
        return clean(text)

    def encode_words(self, text: str) -> list[int]:
        """Ids of ``text`` as the tokenizer cleans and splits it, without start/end tokens."""
        hf = getattr(self.tokenizer, "tokenizer", None)
        if hf is not None:
            return [int(i) for i in hf(self._clean(text), add_special_tokens=False).input_ids]
        return [int(i) for i in self.tokenizer.encode(text)]


_Tower = TypeVar("_Tower", bound="PromptTextTower")


class PromptTextTower(nn.Module):
    """What every text tower over prompt embeddings shares: the token ids the prompt learner reads off it
    (:meth:`_take_layout`) and the freezing rule (:meth:`_freeze`): a frozen tower's encoder, named by
    ``_encoder``, stays in eval mode whatever ``train()`` says, so dropout adds no noise to the prototypes."""

    frozen: bool = False
    _encoder: str = ""  # the submodule a frozen tower keeps in eval mode ("": none, e.g. no dropout)

    def _take_layout(self, layout: TokenLayout) -> None:
        """Start, end, pad and period ids and the padded length, as the model's tokenizer lays them out."""
        self.layout = layout
        self.tokenizer = layout.tokenizer
        self.context_length = layout.context_length
        self.start_ids, self.end_ids = layout.start_ids, layout.end_ids
        self.sot_id = self.start_ids[0] if self.start_ids else None
        self.eot_id = self.end_ids[0] if self.end_ids else None
        self.pad_id = layout.pad_id
        self.period_ids = layout.period_ids

    def _freeze(self, freeze: bool) -> None:
        """Freeze every parameter (``freeze``) and put the encoder into the mode that follows."""
        self.frozen = freeze
        if freeze:
            for p in self.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self: _Tower, mode: bool = True) -> _Tower:
        """As ``nn.Module.train``, but a frozen encoder stays in eval mode."""
        super().train(mode)
        if self.frozen and self._encoder:
            getattr(self, self._encoder).eval()
        return self


class ClipTextTower(PromptTextTower):
    """An open_clip text transformer (frozen by default) over prompt embeddings -> (C, E) text features.

    Causal towers that pool the end token (CLIP, EVA, MetaCLIP, ...) take the exact fast paths of the module
    docstring; the others (SigLIP, CLIPA, MobileCLIP, CoCa) the exact full-length path.

    Args:
        clip_model: an open_clip ``CLIP`` (text parts on the model), ``CustomTextCLIP`` or ``CoCa`` with a
            ``TextTransformer``.
        tokenizer: the model's open_clip tokenizer (see :class:`TokenLayout`).
        path: which computation to use for causal towers (see the module docstring); all give the same
            features.
        freeze: stop gradients into the tower's own weights (gradients still reach the prompt embeddings).
    """

    # open_clip's (untyped) parts, declared for the type checker
    token_embedding: nn.Embedding
    positional_embedding: torch.Tensor
    transformer: Any
    ln_final: nn.Module
    text_projection: Any
    attn_mask: torch.Tensor

    def __init__(
        self, clip_model: nn.Module, tokenizer, path: TextPath = "shared_prefix", freeze: bool = True
    ):
        super().__init__()
        src: Any = clip_model.text if hasattr(clip_model, "text") else clip_model
        for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
            if not hasattr(src, attr):
                raise TypeError(
                    f"{type(clip_model).__name__} has no open_clip text transformer (missing {attr!r}); "
                    "open_clip's Hugging Face text encoders go through OpenClipHFTextTower"
                )
        self.token_embedding = src.token_embedding
        self.positional_embedding = src.positional_embedding
        self.transformer = src.transformer
        self.ln_final = src.ln_final
        self.text_projection = src.text_projection
        mask: Any = getattr(src, "attn_mask", None)
        self.causal = mask is not None
        self.register_buffer("attn_mask", mask.clone() if mask is not None else None, persistent=False)
        # CLIP keeps the pooling on the model (text_pool_type), TextTransformer on itself (pool_type)
        self.pool: str = str(getattr(src, "text_pool_type", None) or getattr(src, "pool_type", "argmax"))
        if self.pool not in ("argmax", "eos", "first", "last"):
            raise TypeError(f"text pooling {self.pool!r} gives no single feature per text")
        self.cls_emb = getattr(src, "cls_emb", None)  # CoCa: a class token appended after the padded text
        self.correct_cls_mask = bool(getattr(src, "correct_cls_mask", False))
        self.pad_mask = bool(getattr(src, "use_pad_mask", False)) or self.cls_emb is not None
        self.num_heads = int(getattr(src, "heads", 0) or self.transformer.resblocks[0].attn.num_heads)
        self._take_layout(TokenLayout(tokenizer))
        self.path: TextPath = path
        self.width = int(self.token_embedding.weight.shape[1])
        if self.context_length > self.positional_embedding.shape[0] - (self.cls_emb is not None):
            raise TypeError(
                f"the tokenizer pads to {self.context_length} tokens, the text tower has "
                f"{self.positional_embedding.shape[0]} positions"
            )
        proj = self.text_projection
        self.output_dim = int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])
        self._freeze(freeze)

    @property
    def exact_shortcuts(self) -> bool:
        """Whether positions after the end token cannot change the feature (causal, pooled at the end
        token)."""
        return self.causal and self.pool in ("argmax", "eos") and self.cls_emb is None

    # -- vocabulary ------------------------------------------------------------------------------------------
    def encode_words(self, text: str) -> list[int]:
        """Token ids of ``text`` without start/end tokens, cleaned as the tokenizer cleans (underscores read
        as
        spaces)."""
        return self.layout.encode_words(text.replace("_", " "))

    def embed_ids(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        """Token embeddings, (..., D), detached from the (frozen) embedding table."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.token_embedding.weight.device)
        return self.token_embedding(ids).detach()

    # -- encoders --------------------------------------------------------------------------------------------
    def forward(self, prompts: PromptEmbeddings) -> torch.Tensor:
        """(C, E) unnormalised text features of the prompts."""
        if prompts.length > self.context_length:
            raise ValueError(
                f"prompts have {prompts.length} tokens; this text tower takes at most {self.context_length}"
            )
        if self.path == "naive" or not self.exact_shortcuts:
            return self.forward_full(prompts, self.context_length)
        if self.path == "truncated" or prompts.prefix.shape[0] == 0:
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
        """The model's own computation over the prompts padded to ``context_length`` (``None``: only the real
        length, exact only where :attr:`exact_shortcuts` holds)."""
        x = prompts.full(context_length)
        c, n = x.shape[:2]
        # real tokens, as open_clip's pad mask sees them (ids != pad id: an end token that is the pad id is
        # hidden)
        last = prompts.eot_index.to(x.device) - int(self.eot_id is not None and self.eot_id == self.pad_id)
        valid = torch.arange(n, device=x.device)[None, :] <= last[:, None]  # (C, n)
        if self.cls_emb is not None:
            x = torch.cat([x, self.cls_emb.expand(c, 1, -1)], dim=1)
            ones = valid.new_ones(c, 1)
            valid = torch.cat([valid, ones] if self.correct_cls_mask else [ones, valid], dim=1)
            n += 1
        x = x + self.positional_embedding[:n]
        mask = self.attn_mask[:n, :n] if self.causal else None
        if self.pad_mask:  # as open_clip: keys at padding positions are hidden from every query
            keys = torch.zeros(c, 1, n, dtype=x.dtype, device=x.device)
            keys = keys.masked_fill(~valid[:, None, :], float("-inf"))
            keys = keys.expand(c, n, n)
            keys = keys if mask is None else keys + mask
            mask = keys.repeat_interleave(self.num_heads, 0)
        x = self.transformer(x, attn_mask=mask)
        if self.cls_emb is not None:  # the class token is pooled, normalised after pooling
            return self._project(self.ln_final(x[:, -1]))
        x = self.ln_final(x)
        if self.pool == "first":
            pooled = x[:, 0]
        elif self.pool == "last":
            pooled = x[:, -1]
        else:
            pooled = x[torch.arange(c, device=x.device), prompts.eot_index]
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
                attended = torch.cat(
                    [own.transpose(0, 1).reshape(p, d), shared.permute(1, 2, 0, 3).reshape(-1, d)]
                )
            x = x + block.ls_1(attn.out_proj(attended))
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        pooled = self.ln_final(x if blocks else x[p:].view(c, s, d)[rows, eot])
        return self._project(pooled)


class OpenClipHFTextTower(PromptTextTower):
    """The Hugging Face text encoder of an open_clip ``CustomTextCLIP`` (RoBERTa, XLM-R, mT5, NLLB towers)
    over
    prompt embeddings -> (C, E), as the model's ``encode_text``.

    The prompts go in as ``inputs_embeds`` with the attention mask open_clip derives from the ids (real
    tokens, not
    padding), padded to the tokenizer's length; the model's own pooler (mean, CLS, max) and projection follow.
    """

    _encoder = "encoder"

    def __init__(
        self, clip_model: nn.Module, tokenizer, path: TextPath = "shared_prefix", freeze: bool = True
    ):
        super().__init__()
        src: Any = clip_model.text
        for attr in ("transformer", "pooler", "proj", "config"):
            if not hasattr(src, attr):
                raise TypeError(f"{type(src).__name__} is not open_clip's HFTextEncoder (missing {attr!r})")
        self.encoder: Any = src
        self._take_layout(TokenLayout(tokenizer))
        self.path = path
        self.width = int(src.transformer.get_input_embeddings().weight.shape[1])
        self.output_dim = int(src.output_dim)
        self._freeze(freeze)

    exact_shortcuts = False  # bidirectional, and a pooler may read padded positions: always the full length

    def encode_words(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (underscores read as spaces)."""
        return self.layout.encode_words(text.replace("_", " "))

    def embed_ids(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        """Word embeddings (no positions), (..., D), detached from the embedding table."""
        table = self.encoder.transformer.get_input_embeddings()
        return table(torch.as_tensor(ids, dtype=torch.long, device=table.weight.device)).detach()

    def forward(self, prompts: PromptEmbeddings) -> torch.Tensor:
        """(C, E) text features of the prompts."""
        if prompts.length > self.context_length:
            raise ValueError(
                f"prompts have {prompts.length} tokens; this text tower takes at most {self.context_length}"
            )
        return self.forward_full(prompts, self.context_length)

    def forward_full(self, prompts: PromptEmbeddings, context_length: int | None) -> torch.Tensor:
        """(C, E) features over the prompts padded to ``context_length`` (padding masked, as open_clip
        masks it)."""
        x = prompts.full(context_length)
        n = x.shape[1]
        # open_clip masks ids equal to the pad id: the real tokens, and an end token only if it is not the
        # pad id
        last = prompts.eot_index.to(x.device) + len(self.end_ids) - 1
        if self.end_ids and self.end_ids[-1] == self.pad_id:
            last = last - 1
        mask = (torch.arange(n, device=x.device)[None, :] <= last[:, None]).long()
        out = self.encoder.transformer(inputs_embeds=x, attention_mask=mask)
        return self.encoder.proj(self.encoder.pooler(out, mask))


def open_clip_text_tower(
    clip_model: nn.Module, tokenizer, path: TextPath = "shared_prefix", freeze: bool = True
) -> ClipTextTower | OpenClipHFTextTower:
    """The text tower of any open_clip model: :class:`OpenClipHFTextTower` for a Hugging Face text encoder,
    :class:`ClipTextTower` for open_clip's own text transformer."""
    if hasattr(getattr(clip_model, "text", None), "pooler"):
        return OpenClipHFTextTower(clip_model, tokenizer, path=path, freeze=freeze)
    return ClipTextTower(clip_model, tokenizer, path=path, freeze=freeze)


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
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_prefix: torch.Tensor,
    v_prefix: torch.Tensor,
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
