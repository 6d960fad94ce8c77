"""VLMixer pre-training losses.

This file is copied to the Hub as remote code with `modeling_vlmixer.py`: it imports only torch.
"""

import torch
import torch.distributed as dist
from torch import nn


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of word-piece `logits` `(batch, seq_len, vocab)` against `labels` `(batch, seq_len)`,
    averaged over the positions whose label is not -100 (0 when there is none, keeping the graph)."""
    logits = logits.reshape(-1, logits.shape[-1]).float()
    labels = labels.reshape(-1)
    if not bool((labels != -100).any()):
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(logits, labels, ignore_index=-100)


def gather_with_grad(embeddings: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gathers `embeddings` `(batch, dim)` over the default process group, keeping the gradient of the
    local part; returns the gathered `(world_size * batch, dim)` tensor and the offset of the local rows.

    Every process must hold the same batch size (Accelerate's `even_batches`, the default, ensures it).
    Outside a distributed run the input is returned unchanged with offset 0.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embeddings, 0
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros(1, dtype=torch.long, device=embeddings.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([embeddings.shape[0]], device=embeddings.device))
    if len({int(size) for size in sizes}) != 1:
        raise ValueError(
            f"The contrastive loss gathers negatives across processes and needs the same batch size on each, "
            f"got {[int(size) for size in sizes]}; keep Accelerate's even_batches=True."
        )
    gathered = torch.cat(all_gather(embeddings), dim=0)
    return gathered, dist.get_rank() * embeddings.shape[0]


def contrastive_loss(
    text_embeds: torch.Tensor, mixed_embeds: torch.Tensor, temperature: float, gather: bool = True
) -> torch.Tensor:
    """VALP's contrastive loss between the text view T and the mixed view S of each sentence.

    `L_cl = -1/B sum_m log( exp(f(T_m, S_m) / tau) / sum_l exp(f(T_m, S_l) / tau) )` with `f` the cosine
    similarity; the negatives `S_l` are the mixed views of the other sentences of the batch, gathered from
    every process when distributed (`gather=True`). The paper writes the sum over the batch; it is averaged
    here so that the loss scale does not depend on the batch size.

    Args:
        text_embeds: `(batch, dim)` projections of the T^mask `[CLS]` states.
        mixed_embeds: `(batch, dim)` projections of the S^mask `[CLS]` states.
        temperature: tau (0.1 in the paper).
    """
    text_embeds = nn.functional.normalize(text_embeds.float(), dim=-1)
    mixed_embeds = nn.functional.normalize(mixed_embeds.float(), dim=-1)
    offset = 0
    if gather:
        mixed_embeds, offset = gather_with_grad(mixed_embeds)
    logits = text_embeds @ mixed_embeds.t() / temperature
    targets = torch.arange(text_embeds.shape[0], device=logits.device) + offset
    return nn.functional.cross_entropy(logits, targets)
