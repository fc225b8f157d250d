"""Published single-stream matching models: ViLT's image-text retrieval head (``vilt:<spec>``).

ViLT (Kim et al. 2021) runs ONE transformer over the concatenation of text tokens
and image patches, like UNITER, and scores a pair with a linear "rank" head on the
pooled first token. It is the UNITER-style model that transformers ships with
weights in a standard format (UNITER's own checkpoints have no transformers class).

Score (``output``):

* ``"itm_logit"`` (default): ``z = w·pool(h_[CLS]) + b``, the raw retrieval logit, unbounded;
* ``"itm_prob"``: ``sigmoid(z)`` in (0, 1), a monotone squashing of the logit (same
  ranking). Whether it is a calibrated match probability depends on how the head
  was fine-tuned, which is not stated in the sources available here.

``spec`` is a folder written by ``save_pretrained`` (model + ``ViltProcessor``) or a
hub id such as ``dandelin/vilt-b32-finetuned-coco`` that is already on disk (see
:mod:`analysis.scorers.weights`; nothing is downloaded). Captions longer than
``config.max_position_embeddings`` tokens (40 for the published ViLT) are truncated
and counted.

ViLT picks which image patches enter the transformer with ``torch.multinomial``
(a random order of the patches; padded patches are sampled as filler and masked
out). The scorer draws it from a generator seeded with 0 for every batch, so
scores are reproducible; the order does not change the result beyond float
rounding, because each patch carries its own position embedding.
"""
from __future__ import annotations

from contextlib import contextmanager

from analysis.scorers.base import Scorer, state_hash
from analysis.scorers.weights import as_rgb, from_pretrained_complete, looks_like_path, pick_device, resolve_hf_folder

ITM_OUTPUTS = ("itm_logit", "itm_prob")


def check_output(output: str, allowed=ITM_OUTPUTS) -> str:
    """``output`` if it is one of ``allowed``, else ``ValueError``."""
    if output not in allowed:
        raise ValueError(f"output must be one of {allowed}, not {output!r}")
    return output


def hf_token_lengths(tokenizer, captions: list[str]) -> list[int]:
    """Tokens per caption before truncation, special tokens included."""
    return [len(ids) for ids in tokenizer(list(captions), add_special_tokens=True, verbose=False)["input_ids"]]


@contextmanager
def seeded_rng(seed: int = 0):
    """Run the block with torch's CPU generator seeded with ``seed``; the outer state is restored."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def source_of(spec: str) -> str:
    """``"local"`` for a folder given by path, ``"published"`` for a hub id (a released model)."""
    return "local" if looks_like_path(spec) else "published"


class HFMatchScorer(Scorer):
    """Plumbing shared by the transformers matching heads: a float32 eval model and counted truncation."""

    def __init__(self, model, tokenizer, *, name: str, pretrained: str, output: str, max_text_tokens: int,
                 source: str = "published", batch_size: int = 32, device: str | None = None):
        super().__init__()
        self.source = source
        device = pick_device(device)
        self.model, self.tokenizer = model.float().eval().to(device), tokenizer
        self.output, self.device = check_output(output), device
        self.name, self.pretrained, self.batch_size = name, pretrained, int(batch_size)
        self.max_text_tokens = int(max_text_tokens)
        self.checkpoint_hash = state_hash(self.model.state_dict())

    def _tokens(self, captions) -> dict:
        """Padded token tensors, truncated at ``max_text_tokens``; truncated captions are counted."""
        self.count_truncation(hf_token_lengths(self.tokenizer, captions))
        return self.tokenizer(list(captions), padding=True, truncation=True, max_length=self.max_text_tokens,
                              return_tensors="pt").to(self.device)


class ViltScorer(HFMatchScorer):
    """ViLT retrieval head over a single stream of text tokens and image patches."""

    family = "single-stream"

    def __init__(self, model, processor, *, output: str = "itm_logit", max_text_tokens: int | None = None, **kw):
        super().__init__(model, processor.tokenizer, output=output,
                         max_text_tokens=max_text_tokens or model.config.max_position_embeddings, **kw)
        self.image_processor = processor.image_processor
        self.label = f"ViLT {self.pretrained} ({self.output}; {self.source})"

    def _score_batch(self, images, captions):
        """The retrieval logit ``z`` per pair (or ``sigmoid(z)`` for ``itm_prob``)."""
        pix = self.image_processor(as_rgb(images), return_tensors="pt").to(self.device)
        with seeded_rng():
            out = self.model(**self._tokens(captions), pixel_values=pix["pixel_values"], pixel_mask=pix["pixel_mask"])
        z = out.logits[:, 0].float()
        return (z.sigmoid() if self.output == "itm_prob" else z).cpu().numpy()


def load(spec: str, batch_size: int = 32, device: str | None = None, output: str = "itm_logit",
         max_text_tokens: int | None = None) -> ViltScorer:
    """Build the scorer for ``vilt:<spec>`` (a local folder, or a hub id already on disk)."""
    from transformers import ViltForImageAndTextRetrieval, ViltProcessor

    return load_hf_scorer(spec, "vilt:", "ViLT", ViltForImageAndTextRetrieval, ViltProcessor, ViltScorer,
                          output=output, batch_size=batch_size, device=device, max_text_tokens=max_text_tokens)


def load_hf_scorer(spec: str, prefix: str, what: str, model_cls, processor_cls, scorer_cls, *, output: str,
                   batch_size: int, device: str | None, max_text_tokens: int | None):
    """Shared loader of the transformers matching scorers: resolve ``<prefix><spec>`` to a local
    folder, load the complete model and its processor, and wrap them in ``scorer_cls``."""
    check_output(output)
    folder, pretrained = resolve_hf_folder(spec, prefix, what)
    device = pick_device(device)
    model = from_pretrained_complete(model_cls, folder)
    processor = processor_cls.from_pretrained(folder)
    return scorer_cls(model, processor, name=f"{prefix}{spec}", pretrained=pretrained, output=output,
                      source=source_of(spec), batch_size=batch_size, device=device, max_text_tokens=max_text_tokens)
