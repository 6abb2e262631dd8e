"""mathlm's sentencepiece tokenizers written as a `tokenizer.json`, so that transformers'
AutoTokenizer loads the folders mathlm writes without sentencepiece or protobuf.

The conversion covers the models `Tokenizer.train` builds (BPE, identity normalization, no dummy
prefix, whitespace kept, digits split, byte fallback, user-defined atomic symbols):
- model: BPE over the same pieces and ids with byte fallback; the merges are every split of a
  piece into two pieces, ranked by the merged piece's score (sentencepiece's BPE merges the pair
  whose result scores highest), as transformers' own SpmConverter does;
- normalizer: spaces become U+2581; pre-tokenizer: each digit alone, then runs of U+2581 start a
  word (sentencepiece never merges across a whitespace boundary, only whitespace runs together);
- the user-defined symbols (newline, code fences) are added tokens matched before the model;
- decoder: U+2581 -> space, byte pieces -> bytes, fused; post-processor: BOS first.
A sentencepiece model built otherwise (a dummy prefix, NFKC, ...) converts differently, so
`sentencepiece_to_json` checks the result against sentencepiece on probe texts and returns None
when any differs: such a folder then carries tokenizer.model only.
"""
from __future__ import annotations

from typing import Sequence

PROBES = ("Question: What is 12 + 345?\nAnswer:\n", "  two  spaces\tand\ttabs   ", " lead and trail ",
          "```python\nx = (22 - 7) / 3\nprint(x)\n```\n```output\n5.0\n```", "unicode: café → ∑ 中文 🙂 ʃ∮ƛ",
          "x=1234567890, y=-0.25; \\boxed{\\frac{1}{2}}", "\n\n    indented\n", "")


def sentencepiece_to_json(sp, user_symbols: Sequence[str], probes: Sequence[str] = PROBES) -> str | None:
    """tokenizer.json text equivalent to the SentencePieceProcessor `sp` (special tokens not added:
    the caller's config names them), or None when it does not reproduce `sp` on `probes`."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = []
    for piece, i in vocab.items():
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i):
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                merges.append((-sp.get_score(i), i, vocab[left], left, right))
    merges.sort()
    unk = sp.id_to_piece(sp.unk_id()) if sp.unk_id() >= 0 else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(a, b) for *_, a, b in merges], unk_token=unk,
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
                                                 pre_tokenizers.Split(Regex("\u2581+"), behavior="merged_with_next")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_tokens([AddedToken(s, normalized=False, special=False) for s in user_symbols if s in vocab])
    if sp.bos_id() >= 0:  # encode(text, add_special_tokens=True) = BOS + text, as mathlm's encode(bos=True)
        bos = sp.id_to_piece(sp.bos_id())
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1",
                                                           special_tokens=[(bos, sp.bos_id())])
    for text in probes:
        ids = sp.encode(text)
        if tok.encode(text, add_special_tokens=False).ids != ids or tok.decode(ids) != sp.decode(ids):
            return None
    return tok.to_str(pretty=True)
