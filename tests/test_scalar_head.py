"""Scalar-head models: the score is the head applied to the backbone's hidden state at the last real
token, for left and right padding; save/load round trip; errors."""
import pytest
import torch

from mathlm import ModelConfig, Transformer
from mathlm.scalar_head import ScalarHeadModel, last_token_index


def model(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64, max_seq_len=32)
    return ScalarHeadModel(Transformer(cfg)).eval()


def test_last_token_index_left_and_right_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 4, 0, 4]


def test_score_is_head_of_last_real_hidden_state():
    m = model()
    seqs = [torch.tensor([3, 4, 5, 6]), torch.tensor([7, 8])]
    right = torch.zeros(2, 4, dtype=torch.long)
    mask = torch.zeros(2, 4, dtype=torch.long)
    for i, s in enumerate(seqs):
        right[i, :len(s)] = s
        mask[i, :len(s)] = 1
    with torch.no_grad():
        scores = m.score(right, mask)
        for i, s in enumerate(seqs):
            h = m.backbone(s[None], return_hidden=True)[0, -1]  # (dim,)
            expected = (h @ m.head.weight[0] + m.head.bias[0]).item()  # the head written out
            assert scores[i].item() == pytest.approx(expected, abs=1e-5)


def test_save_load_roundtrip(tmp_path):
    m = model()
    m.save(tmp_path / "rm", note="test")
    back = ScalarHeadModel.load(tmp_path / "rm")
    x = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(back(x), m(x))
    assert (tmp_path / "rm" / "head_meta.json").read_text().count("test") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]


def test_load_errors(tmp_path):
    m = model()
    from mathlm import save_hf_checkpoint

    save_hf_checkpoint(m.backbone, tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="is not a scalar-head checkpoint"):
        ScalarHeadModel.load(tmp_path / "plain")
