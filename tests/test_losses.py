"""Tests for mathlm.losses against independent references: values worked out by hand in the
docstrings, naive Python loops, float64 PyTorch (F.cross_entropy, log_softmax)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mathlm.losses import (
    RunningLoss,
    aggregate_token_losses,
    critique_loss,
    dpo_loss,
    gae,
    grpo_advantages,
    hard_sample_weights,
    kl_penalty,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    reward_loss,
    sequence_logprobs,
    sft_loss,
    token_level_rewards,
    token_logprobs,
)

LN2, LN3 = math.log(2.0), math.log(3.0)


def softplus(z: float) -> float:
    """-log sigmoid(-z) = log(1 + e^z), by hand."""
    return math.log1p(math.exp(z))


def ragged_mask(B: int, T: int, generator: torch.Generator) -> torch.Tensor:
    """Masks with a prompt in front, holes inside, padding at the end; row 0 full, row 1 empty."""
    mask = torch.rand(B, T, generator=generator) > 0.3
    mask[0] = True
    mask[1] = False
    return mask


# ---------------------------------------------------------------------------------------------
# token log-probs, SFT, sequence log-probs


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 20, None])
def test_sft_loss_and_gradient_match_float64_cross_entropy(chunk_size):
    g = torch.Generator().manual_seed(0)
    full = torch.randn(3, 8, 11, generator=g, dtype=torch.float64) * 3
    ids = torch.randint(0, 11, (3, 8), generator=g)
    mask = ragged_mask(3, 8, g)
    mask[2, 3] = True
    # The caller shifts: a non-contiguous view of the logits, labels one position ahead.
    logits_ours = full.clone().requires_grad_()
    loss, diag = sft_loss(logits_ours[:, :-1], ids[:, 1:], mask[:, 1:], chunk_size=chunk_size)
    logits_ref = full.clone().requires_grad_()
    m = mask[:, 1:]
    ref = F.cross_entropy(logits_ref[:, :-1][m], ids[:, 1:][m])
    loss.backward()
    ref.backward()
    assert loss.dtype == torch.float64
    assert abs(loss.item() - ref.item()) < 1e-12
    assert torch.allclose(logits_ours.grad, logits_ref.grad, rtol=0, atol=1e-12)
    assert diag["num_target_tokens"].item() == m.sum().item()
    assert abs(diag["nll"].item() - ref.item()) < 1e-12


def test_sft_loss_hand_value_and_gradient():
    """V = 2, one row, two target tokens.
    token 1: logits (0, ln 3) -> p = (1/4, 3/4), label 1: nll = ln(4/3)
    token 2: logits (0, 0)    -> p = (1/2, 1/2), label 0: nll = ln 2
    loss = (ln(4/3) + ln 2) / 2 = ln(8/3) / 2
    d loss / d z = (p - onehot) / N: token 1 (1/4, -1/4)/2, token 2 (-1/2, 1/2)/2."""
    logits = torch.tensor([[[0.0, LN3], [0.0, 0.0]]], requires_grad=True)
    loss, _ = sft_loss(logits, torch.tensor([[1, 0]]), torch.ones(1, 2, dtype=torch.bool))
    loss.backward()
    assert abs(loss.item() - math.log(8 / 3) / 2) < 1e-6
    expected = torch.tensor([[[0.125, -0.125], [-0.25, 0.25]]])
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_sft_loss_weights_against_naive_loop():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, 9, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 9, (4, 6), generator=g)
    mask = torch.rand(4, 6, generator=g) > 0.4
    mask[:, 0] = True
    weights = torch.tensor([0.5, 2.0, 1.0, 0.5], dtype=torch.float64)
    total, count = 0.0, 0
    for b in range(4):
        for t in range(6):
            if mask[b, t]:
                row = logits[b, t].tolist()
                log_z = math.log(sum(math.exp(v) for v in row))
                total += weights[b].item() * (log_z - row[labels[b, t].item()])
                count += 1
    loss, diag = sft_loss(logits, labels, mask, weights=weights)
    assert abs(loss.item() - total / count) < 1e-12
    per_sample = diag["per_sample_nll"]
    for b in range(4):
        nll = F.cross_entropy(logits[b][mask[b]], labels[b][mask[b]])
        assert abs(per_sample[b].item() - nll.item()) < 1e-12


def test_sft_loss_gradient_accumulation_sums_to_full_batch():
    """Micro-batches of unequal token counts with num_target_tokens = the global count: the
    summed micro-batch losses and gradients equal the full batch's token mean."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 7, 13, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 13, (5, 7), generator=g)
    mask = torch.rand(5, 7, generator=g) > 0.5
    mask[0] = True
    full = logits.clone().requires_grad_()
    full_loss, _ = sft_loss(full, labels, mask)
    full_loss.backward()
    n = int(mask.sum())
    parts = logits.clone().requires_grad_()
    micro = [sft_loss(parts[s], labels[s], mask[s], num_target_tokens=n)[0]
             for s in (slice(0, 1), slice(1, 4), slice(4, 5))]
    summed = sum(micro)
    summed.backward()
    assert abs(summed.item() - full_loss.item()) < 1e-12
    assert torch.allclose(parts.grad, full.grad, atol=1e-14)
    # Without the global count each micro-batch is its own mean: a different (wrong) objective.
    plain = sum(sft_loss(logits[s], labels[s], mask[s])[0] for s in (slice(0, 1), slice(1, 5)))
    assert abs(plain.item() - full_loss.item()) > 1e-3


def test_sft_loss_ignores_masked_out_logits_and_labels():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 6, 7, generator=g)
    labels = torch.randint(0, 7, (3, 6), generator=g)
    mask = ragged_mask(3, 6, g)
    a = logits.clone().requires_grad_()
    loss_a, _ = sft_loss(a, labels, mask, chunk_size=4)
    loss_a.backward()
    poisoned = logits.clone()
    poisoned[~mask] = float("nan")
    poisoned[~mask, 0] = 1e30
    bad_labels = labels.clone()
    bad_labels[~mask] = -100
    bad_labels[~mask & (torch.arange(6) % 2 == 0)] = 10**6
    b = poisoned.requires_grad_()
    loss_b, _ = sft_loss(b, bad_labels, mask.float(), chunk_size=4)
    loss_b.backward()
    assert loss_a.item() == loss_b.item()
    assert torch.equal(a.grad, b.grad)
    assert torch.isfinite(b.grad).all()
    assert (b.grad[~mask] == 0).all()


def test_sft_loss_bf16_logits_computed_in_float32():
    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(2, 5, 50, generator=g) * 4).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 50, (2, 5), generator=g)
    mask = torch.ones(2, 5, dtype=torch.bool)
    loss, _ = sft_loss(logits, labels, mask, chunk_size=3)
    loss.backward()
    ref_logits = logits.detach().double().requires_grad_()  # the exact bf16 values, in float64
    ref = F.cross_entropy(ref_logits.reshape(-1, 50), labels.reshape(-1))
    ref.backward()
    assert loss.dtype == torch.float32
    assert abs(loss.item() - ref.item()) < 1e-5
    assert logits.grad.dtype == torch.bfloat16
    # bf16 has 8 bits of mantissa: the gradient is the float64 one rounded to bf16.
    assert torch.allclose(logits.grad.double(), ref_logits.grad, rtol=1e-2, atol=1e-5)


class _Float32Probe(TorchDispatchMode):
    """Records the largest float32 tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(o, torch.Tensor) and o.dtype == torch.float32:
                self.largest = max(self.largest, o.numel())
        return out


def test_chunking_never_materializes_full_float32_logprobs():
    """bf16 logits (2, 16, 64), chunk of 4 positions: no float32 tensor above 4 * 64 elements in
    forward or backward, whereas the naive upcast builds the full 2 * 16 * 64 = 2048."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 16, 64, generator=g).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 64, (2, 16), generator=g)
    mask = torch.rand(2, 16, generator=g) > 0.3
    with _Float32Probe() as probe:
        loss, _ = sft_loss(logits, labels, mask, chunk_size=4)
        loss.backward()
        total, _ = sequence_logprobs(logits, labels, mask, chunk_size=4)
        total.sum().backward()
    assert probe.largest <= 4 * 64
    with _Float32Probe() as naive:
        F.cross_entropy(logits.float()[mask], labels[mask]).backward()
    assert naive.largest >= 2 * 16 * 64


def test_token_logprobs_temperature_and_ignored_labels():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 8, (2, 5), generator=g)
    labels[1, 2] = -100
    ours_in = logits.clone().requires_grad_()
    ours = token_logprobs(ours_in, labels, chunk_size=2, temperature=0.7)
    ref_in = logits.clone().requires_grad_()
    ref = (ref_in / 0.7).log_softmax(-1).gather(-1, labels.clamp_min(0)[..., None]).squeeze(-1)
    ref = torch.where(labels >= 0, ref, 0.0)
    weights = torch.randn(2, 5, generator=g, dtype=torch.float64)
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    assert torch.allclose(ours, ref, atol=1e-12)
    assert ours[1, 2].item() == 0.0
    assert torch.allclose(ours_in.grad, ref_in.grad, atol=1e-12)
    assert (ours_in.grad[1, 2] == 0).all()


def test_sequence_logprobs_against_naive_loop():
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 6, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (3, 6), generator=g)
    mask = ragged_mask(3, 6, g)
    total, mean = sequence_logprobs(logits, labels, mask, chunk_size=4)
    for b in range(3):
        s, n = 0.0, 0
        for t in range(6):
            if mask[b, t]:
                row = logits[b, t].tolist()
                s += row[labels[b, t].item()] - math.log(sum(math.exp(v) for v in row))
                n += 1
        assert abs(total[b].item() - s) < 1e-12
        assert abs(mean[b].item() - (s / n if n else 0.0)) < 1e-12
    assert mean[1].item() == 0.0  # row 1 has no response token


def test_vocabulary_losses_reject_bad_shapes_and_values():
    logits = torch.zeros(2, 5, 11)
    labels = torch.zeros(2, 5, dtype=torch.long)
    mask = torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"logits must be \(B, T, V\), got shape \(2, 11\)"):
        sft_loss(torch.zeros(2, 11), labels, mask)
    with pytest.raises(ValueError, match=r"labels has shape \(2, 4\), expected \(2, 5\)"):
        sft_loss(logits, labels[:, :4], mask)
    with pytest.raises(ValueError, match=r"loss_mask has shape \(2, 6\), expected \(2, 5\)"):
        sft_loss(logits, labels, torch.ones(2, 6))
    with pytest.raises(ValueError, match=r"weights has shape \(3,\), expected \(2,\)"):
        sft_loss(logits, labels, mask, weights=torch.ones(3))
    bad = labels.clone()
    bad[1, 3] = 11
    with pytest.raises(ValueError, match=r"labels\[1, 3\] = 11 lies inside loss_mask but outside the vocabulary \[0, 11\)"):
        sft_loss(logits, bad, mask)
    with pytest.raises(ValueError, match=r"labels must be < vocabulary size V \(11\), got max label 11"):
        token_logprobs(logits, bad)
    with pytest.raises(ValueError, match=r"labels must be an integer tensor, got dtype torch.float32"):
        sft_loss(logits, labels.float(), mask)
    with pytest.raises(ValueError, match=r"num_target_tokens \(0\) must be > 0"):
        sft_loss(logits, labels, mask, num_target_tokens=0)
    with pytest.raises(ValueError, match=r"chunk_size \(0\) must be >= 1"):
        sequence_logprobs(logits, labels, mask, chunk_size=0)
    with pytest.raises(ValueError, match=r"temperature \(0.0\) must be > 0"):
        token_logprobs(logits, labels, temperature=0.0)


# ---------------------------------------------------------------------------------------------
# hard-sample weights


def test_hard_sample_weights_hand_values():
    """losses (0, ln 3), temperature 1: exp = (1, 3), softmax = (1/4, 3/4), times B=2: (0.5, 1.5).
    scores (ln 3, 0): hardness -scores = (-ln 3, 0), softmax the same (1/4, 3/4): (0.5, 1.5), the
    lower score weighs more.
    Three samples, losses (0, 0, ln 4): softmax (1/6, 1/6, 2/3) -> (0.5, 0.5, 2).
      max_weight 1.5: the hard one is capped at 1.5, the others share 1.5: (0.75, 0.75, 1.5).
      and min_weight 0.8: (0.8, 0.8, c) with 0.8 + 0.8 + c = 3, c = 1.4 (and c/4 < 0.8)."""
    w = hard_sample_weights(losses=torch.tensor([0.0, LN3]))
    assert torch.allclose(w, torch.tensor([0.5, 1.5]), atol=1e-6)
    w = hard_sample_weights(torch.tensor([LN3, 0.0]))
    assert torch.allclose(w, torch.tensor([0.5, 1.5]), atol=1e-6)
    three = torch.tensor([0.0, 0.0, math.log(4.0)])
    assert torch.allclose(hard_sample_weights(losses=three), torch.tensor([0.5, 0.5, 2.0]), atol=1e-6)
    assert torch.allclose(hard_sample_weights(losses=three, max_weight=1.5),
                          torch.tensor([0.75, 0.75, 1.5]), atol=1e-6)
    assert torch.allclose(hard_sample_weights(losses=three, min_weight=0.8, max_weight=1.5),
                          torch.tensor([0.8, 0.8, 1.4]), atol=1e-6)
    # temperature 2 halves the hardness: losses (0, ln 9) at T=2 equal losses (0, ln 3) at T=1.
    w = hard_sample_weights(losses=torch.tensor([0.0, math.log(9.0)]), temperature=2.0)
    assert torch.allclose(w, torch.tensor([0.5, 1.5]), atol=1e-6)
    assert torch.equal(hard_sample_weights(torch.full((5,), 0.3)), torch.ones(5))


def test_hard_sample_weights_mean_one_bounds_order_determinism():
    g = torch.Generator().manual_seed(8)
    for trial in range(20):
        scores = torch.randn(17, generator=g) * (0.1 + trial)
        lo, hi = [(0.0, math.inf), (0.5, 2.0), (0.9, 1.1), (0.0, 1.3)][trial % 4]
        w = hard_sample_weights(scores, temperature=0.5, min_weight=lo, max_weight=hi)
        assert abs(w.double().mean().item() - 1.0) < 1e-6
        assert (w >= lo - 1e-6).all() and (w <= hi + 1e-6).all()
        order = scores.argsort()  # lower score -> larger (or equal, when clipped) weight
        assert (w[order][1:] <= w[order][:-1] + 1e-6).all()
        assert torch.equal(w, hard_sample_weights(scores, temperature=0.5, min_weight=lo, max_weight=hi))
        perm = torch.randperm(17, generator=g)
        w_perm = hard_sample_weights(scores[perm], temperature=0.5, min_weight=lo, max_weight=hi)
        assert torch.allclose(w_perm, w[perm], atol=1e-6)


def test_hard_sample_weights_errors():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="exactly one of scores= or losses=, got both"):
        hard_sample_weights(x, losses=x)
    with pytest.raises(ValueError, match="exactly one of scores= or losses=, got neither"):
        hard_sample_weights()
    with pytest.raises(ValueError, match=r"need 0 <= min_weight \(1.5\) <= 1 <= max_weight \(2.0\)"):
        hard_sample_weights(x, min_weight=1.5, max_weight=2.0)
    with pytest.raises(ValueError, match=r"temperature \(0\) must be > 0"):
        hard_sample_weights(x, temperature=0)
    with pytest.raises(ValueError, match=r"scores must be \(B,\), got shape \(3, 1\)"):
        hard_sample_weights(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="losses must be finite"):
        hard_sample_weights(losses=torch.tensor([0.0, float("nan")]))


def test_running_loss_ema_by_hand():
    """decay 0.9: id 7 sees 1.0 then 2.0 -> 1.0, then 0.9 * 1.0 + 0.1 * 2.0 = 1.1;
    id 3 sees 4.0 -> 4.0, then 0.9 * 4.0 + 0.1 * 0.0 = 3.6."""
    running = RunningLoss(decay=0.9)
    assert torch.allclose(running.update([7, 3], torch.tensor([1.0, 4.0])), torch.tensor([1.0, 4.0]))
    assert torch.allclose(running.update(torch.tensor([7, 3]), torch.tensor([2.0, 0.0])), torch.tensor([1.1, 3.6]))
    assert torch.allclose(running.get([3, 7, 99], default=-1.0), torch.tensor([3.6, 1.1, -1.0]))
    restored = RunningLoss(decay=0.5)
    restored.load_state_dict(running.state_dict())
    assert restored.decay == 0.9 and len(restored) == 2
    assert torch.allclose(restored.update([7], torch.tensor([0.0])), torch.tensor([0.99]))
    with pytest.raises(ValueError, match=r"decay \(1.0\) must be in \[0, 1\)"):
        RunningLoss(decay=1.0)
    with pytest.raises(ValueError, match=r"losses has shape \(3,\), expected \(2,\)"):
        running.update([1, 2], torch.zeros(3))


# ---------------------------------------------------------------------------------------------
# DPO family

# Two pairs: policy chosen (-1, -3), rejected (-2, -1); reference chosen (-1.5, -2), rejected (-1, -2.5).
# chosen log-ratio (0.5, -1), rejected log-ratio (-1, 1.5), h = (1.5, -2.5); beta = 0.1: beta h = (0.15, -0.25).
PC, PR = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
RC, RR = torch.tensor([-1.5, -2.0]), torch.tensor([-1.0, -2.5])


def test_dpo_sigmoid_hand_value_gradient_and_diagnostics():
    """-log sigmoid(z) = log(1 + e^-z): losses log(1 + e^-0.15), log(1 + e^0.25), mean of both.
    d loss / d pc_i = -beta sigmoid(-beta h_i) / B = -0.1 / (1 + e^(beta h_i)) / 2.
    Rewards: chosen 0.1 * (0.5, -1) mean -0.025, rejected 0.1 * (-1, 1.5) mean 0.025,
    margin mean 0.1 * (1.5, -2.5) = -0.05, accuracy 1/2."""
    pc = PC.clone().requires_grad_()
    loss, diag = dpo_loss(pc, PR, RC, RR, beta=0.1)
    loss.backward()
    assert abs(loss.item() - (softplus(-0.15) + softplus(0.25)) / 2) < 1e-6
    expected_grad = [-0.1 / (1 + math.exp(0.15)) / 2, -0.1 / (1 + math.exp(-0.25)) / 2]
    assert torch.allclose(pc.grad, torch.tensor(expected_grad), atol=1e-7)
    assert abs(diag["reward_chosen"].item() + 0.025) < 1e-7
    assert abs(diag["reward_rejected"].item() - 0.025) < 1e-7
    assert abs(diag["reward_margin"].item() + 0.05) < 1e-7
    assert diag["reward_accuracy"].item() == 0.5
    assert abs(diag["logps_chosen"].item() + 2.0) < 1e-7


def test_dpo_label_smoothing_robust_ipo_hinge_by_hand():
    """eps = 0.2, l(z) = log(1 + e^-z):
    cDPO   (1 - eps) l(beta h) + eps l(-beta h)
    robust ((1 - eps) l(beta h) - eps l(-beta h)) / (1 - 2 eps)
    ipo    (h - 1/(2 beta))^2 = (1.5 - 5)^2, (-2.5 - 5)^2 = 12.25, 56.25 -> 34.25
    hinge  relu(1 - beta h) = 0.85, 1.25 -> 1.05"""
    def l(z):
        return softplus(-z)
    zs = [0.15, -0.25]
    cdpo = sum(0.8 * l(z) + 0.2 * l(-z) for z in zs) / 2
    robust = sum((0.8 * l(z) - 0.2 * l(-z)) / 0.6 for z in zs) / 2
    assert abs(dpo_loss(PC, PR, RC, RR, 0.1, "sigmoid", 0.2)[0].item() - cdpo) < 1e-6
    assert abs(dpo_loss(PC, PR, RC, RR, 0.1, "robust", 0.2)[0].item() - robust) < 1e-6
    assert abs(dpo_loss(PC, PR, RC, RR, 0.1, "ipo")[0].item() - 34.25) < 1e-5
    assert abs(dpo_loss(PC, PR, RC, RR, 0.1, "hinge")[0].item() - 1.05) < 1e-6
    # robust with eps = 0 is plain DPO
    assert abs(dpo_loss(PC, PR, RC, RR, 0.1, "robust")[0].item() - dpo_loss(PC, PR, RC, RR, 0.1)[0].item()) < 1e-7


def test_dpo_reference_free_and_rpo_term():
    """Reference-free: h = pc - pr = (1, -2), beta h = (0.1, -0.2): losses l(0.1), l(-0.2).
    RPO: chosen_nll (0.7, 0.3), alpha 1 adds their mean 0.5 to the DPO loss."""
    loss, diag = dpo_loss(PC, PR, beta=0.1, reference_free=True)
    assert abs(loss.item() - (softplus(-0.1) + softplus(0.2)) / 2) < 1e-6
    assert abs(diag["reward_chosen"].item() - 0.1 * (-2.0)) < 1e-7  # beta * mean(pc)
    nll = torch.tensor([0.7, 0.3], requires_grad=True)
    loss, diag = dpo_loss(PC, PR, RC, RR, 0.1, chosen_nll=nll, rpo_alpha=1.0)
    loss.backward()
    assert abs(loss.item() - ((softplus(-0.15) + softplus(0.25)) / 2 + 0.5)) < 1e-6
    assert abs(diag["nll"].item() - 0.5) < 1e-7
    assert abs(diag["loss_preference"].item() - (softplus(-0.15) + softplus(0.25)) / 2) < 1e-6
    assert torch.allclose(nll.grad, torch.tensor([0.5, 0.5]))


def test_dpo_gradients_finite_and_reference_detached():
    pc = torch.tensor([-500.0, -1.0], requires_grad=True)
    pr = torch.tensor([-1.0, -800.0], requires_grad=True)
    rc = torch.tensor([-1.0, -1.0], requires_grad=True)
    for loss_type in ("sigmoid", "robust", "ipo", "hinge"):
        loss, _ = dpo_loss(pc, pr, rc, torch.zeros(2), 1.0, loss_type)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(pc.grad).all() and torch.isfinite(pr.grad).all()
    assert rc.grad is None


def test_dpo_bf16_inputs_and_errors():
    loss, _ = dpo_loss(PC.bfloat16(), PR.bfloat16(), RC.bfloat16(), RR.bfloat16(), 0.1)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - (softplus(-0.15) + softplus(0.25)) / 2) < 1e-6
    with pytest.raises(ValueError, match=r"loss_type 'kto' is not one of \('sigmoid', 'robust', 'ipo', 'hinge'\)"):
        dpo_loss(PC, PR, RC, RR, loss_type="kto")
    with pytest.raises(ValueError, match=r"label_smoothing \(0.1\) applies to loss_type 'sigmoid' or 'robust', not 'ipo'"):
        dpo_loss(PC, PR, RC, RR, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"label_smoothing \(0.5\) must be in \[0, 0.5\)"):
        dpo_loss(PC, PR, RC, RR, label_smoothing=0.5)
    with pytest.raises(ValueError, match=r"ref_rejected_logps has shape \(3,\), expected \(2,\)"):
        dpo_loss(PC, PR, RC, torch.zeros(3))
    with pytest.raises(ValueError, match="ref_chosen_logps and ref_rejected_logps are required"):
        dpo_loss(PC, PR)
    with pytest.raises(ValueError, match="reference_free=True ignores the reference"):
        dpo_loss(PC, PR, RC, RR, reference_free=True)
    with pytest.raises(ValueError, match=r"chosen_nll and rpo_alpha > 0 go together \(got rpo_alpha=1.0, chosen_nll missing\)"):
        dpo_loss(PC, PR, RC, RR, rpo_alpha=1.0)
    with pytest.raises(ValueError, match=r"policy_chosen_logps must be \(B,\), got shape \(2, 1\)"):
        dpo_loss(PC[:, None], PR, RC, RR)


# ---------------------------------------------------------------------------------------------
# masked reductions and aggregation


def test_masked_reductions_by_hand():
    """x = (1, 2, 3, 100), mask (1, 1, 1, 0): sum 6, mean 2, unbiased var ((1 + 0 + 1) / 2) = 1,
    biased var 2/3, whitened (-1, 0, 1, 0); scale-only whitening keeps the mean: (1, 2, 3, 0)."""
    x = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    assert masked_sum(x, mask).item() == 6.0
    assert masked_mean(x, mask).item() == 2.0
    assert torch.equal(masked_mean(x, mask, dim=1), torch.tensor([1.5, 3.0]))
    assert masked_var(x, mask).item() == 1.0
    assert abs(masked_var(x, mask, unbiased=False).item() - 2 / 3) < 1e-7
    assert torch.allclose(masked_whiten(x, mask), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), atol=1e-6)
    assert torch.allclose(masked_whiten(x, mask, shift_mean=False), torch.tensor([[1.0, 2.0], [3.0, 0.0]]), atol=1e-6)
    assert masked_mean(x, torch.zeros(2, 2)).item() == 0.0
    with pytest.raises(ValueError, match=r"masked_var needs at least 2 masked entries \(unbiased=True\), got 1"):
        masked_var(x, torch.tensor([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match=r"mask has shape \(2,\), expected \(2, 2\)"):
        masked_mean(x, torch.ones(2))


def test_aggregation_modes_by_hand():
    """losses ((1, 2, 9), (3, 9, 9)), mask ((1, 1, 0), (1, 0, 0)):
    token_mean (1 + 2 + 3) / 3 = 2; seq_mean_token_mean (1.5 + 3) / 2 = 2.25;
    seq_mean_token_sum (3 + 3) / 2 = 3; seq_mean_token_sum_norm 6 / (2 rows * T=3) = 1,
    with norm_length 4: 6 / 8 = 0.75; token_mean with normalizer 12: 6 / 12 = 0.5."""
    losses = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert aggregate_token_losses(losses, mask).item() == 2.0
    assert aggregate_token_losses(losses, mask, "seq_mean_token_mean").item() == 2.25
    assert aggregate_token_losses(losses, mask, "seq_mean_token_sum").item() == 3.0
    assert aggregate_token_losses(losses, mask, "seq_mean_token_sum_norm").item() == 1.0
    assert aggregate_token_losses(losses, mask, "seq_mean_token_sum_norm", norm_length=4).item() == 0.75
    assert aggregate_token_losses(losses, mask, normalizer=12).item() == 0.5
    with pytest.raises(ValueError, match=r"aggregation 'mean' is not one of \('token_mean'"):
        aggregate_token_losses(losses, mask, "mean")


# ---------------------------------------------------------------------------------------------
# GAE


def naive_gae(rewards, values, mask, gamma, lam):
    """Explicit backward recursion per row over the masked-in positions only."""
    B, T = len(rewards), len(rewards[0])
    adv = [[0.0] * T for _ in range(B)]
    ret = [[0.0] * T for _ in range(B)]
    for b in range(B):
        positions = [t for t in range(T) if mask[b][t]]
        next_value, next_adv = 0.0, 0.0
        for t in reversed(positions):
            delta = rewards[b][t] + gamma * next_value - values[b][t]
            a = delta + gamma * lam * next_adv
            adv[b][t], ret[b][t] = a, a + values[b][t]
            next_value, next_adv = values[b][t], a
    return adv, ret


def test_gae_hand_value():
    """rewards (0, 0, 1), values (0.5, 0.6, 0.7), gamma = lam = 1: A_t = sum of future rewards - V_t
    = (0.5, 0.4, 0.3), returns = 1 everywhere. gamma = 1, lam = 0: A_t = r_t + V_{t+1} - V_t
    = (0.1, 0.1, 0.3). The padding position 3 gets 0."""
    r = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    v = torch.tensor([[0.5, 0.6, 0.7, 9.0]])
    m = torch.tensor([[1, 1, 1, 0]])
    adv, ret = gae(r, v, m, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.4, 0.3, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    adv, _ = gae(r, v, m, gamma=1.0, lam=0.0)
    assert torch.allclose(adv, torch.tensor([[0.1, 0.1, 0.3, 0.0]]))


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (0.99, 1.0), (1.0, 0.0)])
def test_gae_matches_naive_recursion_on_ragged_masks(gamma, lam):
    g = torch.Generator().manual_seed(9)
    r = torch.randn(6, 11, generator=g, dtype=torch.float64)
    v = torch.randn(6, 11, generator=g, dtype=torch.float64)
    mask = ragged_mask(6, 11, g)
    mask[2, :4] = False  # a prompt in front
    mask[3, 5:] = False  # padding at the end
    adv, ret = gae(r, v, mask, gamma, lam)
    ref_adv, ref_ret = naive_gae(r.tolist(), v.tolist(), mask.tolist(), gamma, lam)
    assert torch.allclose(adv, torch.tensor(ref_adv, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(ret, torch.tensor(ref_ret, dtype=torch.float64), atol=1e-12)
    poisoned_r, poisoned_v = r.clone(), v.clone()
    poisoned_r[~mask], poisoned_v[~mask] = float("nan"), 1e30
    adv2, ret2 = gae(poisoned_r, poisoned_v, mask, gamma, lam)
    assert torch.equal(adv, adv2) and torch.equal(ret, ret2)


def test_gae_errors():
    with pytest.raises(ValueError, match=r"values has shape \(2, 3\), expected \(2, 4\)"):
        gae(torch.zeros(2, 4), torch.zeros(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"rewards must be \(B, T\), got shape \(4,\)"):
        gae(torch.zeros(4), torch.zeros(4), torch.ones(4))
    with pytest.raises(ValueError, match=r"gamma \(1.5\) and lam \(0.95\) must lie in \[0, 1\]"):
        gae(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 4), gamma=1.5)


# ---------------------------------------------------------------------------------------------
# PPO policy and value losses


def naive_ppo_policy(logps, old, adv, mask, eps_low, eps_high, dual, mode, norm_length=None):
    """PPO objective written as in the paper, one token at a time: min(r A, clip(r) A), for A < 0
    with dual clip max(that, c A); loss = -objective, aggregated with explicit loops."""
    B, T = len(logps), len(logps[0])
    tok = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in range(T):
            if not mask[b][t]:
                continue
            a = adv[b][t]
            ratio = math.exp(logps[b][t] - old[b][t])
            objective = min(ratio * a, min(max(ratio, 1 - eps_low), 1 + eps_high) * a)
            if dual is not None and a < 0:
                objective = max(objective, dual * a)
            tok[b][t] = -objective
    rows = [(sum(tok[b][t] for t in range(T) if mask[b][t]), sum(mask[b])) for b in range(B)]
    nonempty = [(s, n) for s, n in rows if n > 0]
    if mode == "token_mean":
        return sum(s for s, _ in rows) / sum(n for _, n in rows)
    if mode == "seq_mean_token_mean":
        return sum(s / n for s, n in nonempty) / len(nonempty)
    if mode == "seq_mean_token_sum":
        return sum(s for s, _ in nonempty) / len(nonempty)
    return sum(s for s, _ in nonempty) / (len(nonempty) * (norm_length or T))


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"])
@pytest.mark.parametrize("eps_high,dual", [(None, None), (0.28, None), (None, 3.0), (0.28, 2.0)])
def test_ppo_policy_loss_matches_naive_loop(mode, eps_high, dual):
    g = torch.Generator().manual_seed(10)
    logps = -torch.rand(5, 9, generator=g, dtype=torch.float64) * 3
    old = logps + torch.randn(5, 9, generator=g, dtype=torch.float64) * 0.6  # ratios far outside the clip
    adv = torch.randn(5, 9, generator=g, dtype=torch.float64) * 2
    mask = ragged_mask(5, 9, g)
    loss, _ = ppo_policy_loss(logps, old, adv, mask, 0.2, eps_high, dual, aggregation=mode)
    ref = naive_ppo_policy(logps.tolist(), old.tolist(), adv.tolist(), mask.tolist(), 0.2,
                           0.2 if eps_high is None else eps_high, dual, mode)
    assert abs(loss.item() - ref) < 1e-12


def test_ppo_policy_gradient_and_diagnostics_by_hand():
    """Four tokens, N = 4, token mean, eps 0.2, dual clip 3:
    1. A = 1,  ratio 1.5 > 1.2: clipped, loss -1.2, gradient 0 (clip_frac_high)
    2. A = 1,  ratio 1:   loss -1,  d loss / d logp = -A ratio / N = -0.25
    3. A = -1, ratio 0.5 < 0.8: clipped, loss 0.8, gradient 0 (clip_frac_low)
    4. A = -1, ratio 4:   unclipped loss 4 > dual bound -c A = 3: loss 3, gradient 0 (dual)
    loss = (-1.2 - 1 + 0.8 + 3) / 4 = 0.4; clip_frac 2/4, dual_clip_frac 1/4, ratio_max 4."""
    old = torch.zeros(1, 4)
    logps = torch.log(torch.tensor([[1.5, 1.0, 0.5, 4.0]])).requires_grad_()
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss, diag = ppo_policy_loss(logps, old, adv, torch.ones(1, 4), dual_clip=3.0)
    loss.backward()
    assert abs(loss.item() - 0.4) < 1e-6
    assert torch.allclose(logps.grad, torch.tensor([[0.0, -0.25, 0.0, 0.0]]))
    assert diag["clip_frac"].item() == 0.5
    assert diag["clip_frac_high"].item() == 0.25 and diag["clip_frac_low"].item() == 0.25
    assert diag["dual_clip_frac"].item() == 0.25
    assert abs(diag["ratio_max"].item() - 4.0) < 1e-6
    # approx_kl, k3 of KL(old || new) with r = new / old: mean of r - 1 - log r
    k3 = sum(r - 1 - math.log(r) for r in (1.5, 1.0, 0.5, 4.0)) / 4
    assert abs(diag["approx_kl"].item() - k3) < 1e-6


def test_ppo_policy_loss_masks_broadcast_dtype_and_errors():
    g = torch.Generator().manual_seed(11)
    logps = -torch.rand(3, 6, generator=g)
    old = logps + 0.3 * torch.randn(3, 6, generator=g)
    seq_adv = torch.randn(3, generator=g)
    mask = ragged_mask(3, 6, g)
    a = logps.clone().requires_grad_()
    loss_a, _ = ppo_policy_loss(a, old, seq_adv, mask)
    loss_a.backward()
    # old log-probs and advantages are constants even when the caller's tensors carry a graph
    old_leaf, adv_leaf = old.clone().requires_grad_(), seq_adv.clone().requires_grad_()
    ppo_policy_loss(logps.clone().requires_grad_(), old_leaf, adv_leaf, mask)[0].backward()
    assert old_leaf.grad is None and adv_leaf.grad is None
    # (B,) advantages broadcast over tokens
    loss_full, _ = ppo_policy_loss(logps, old, seq_adv[:, None].expand(3, 6), mask)
    assert loss_full.item() == loss_a.item()
    # garbage (NaN, inf) at masked-out positions changes neither the loss nor the gradient
    p_lp, p_old = logps.clone(), old.clone()
    p_lp[~mask], p_old[~mask] = float("nan"), -float("inf")
    b = p_lp.requires_grad_()
    loss_b, diag = ppo_policy_loss(b, p_old, seq_adv, mask, dual_clip=3.0)
    loss_b.backward()
    assert loss_b.item() == loss_a.item()
    assert torch.equal(b.grad, a.grad) and torch.isfinite(b.grad).all()
    assert all(torch.isfinite(v) for v in diag.values())
    # bf16 log-probs are upcast: same value as float64 on the same (rounded) numbers
    loss_bf16, _ = ppo_policy_loss(logps.bfloat16(), old.bfloat16(), seq_adv, mask)
    loss_f64, _ = ppo_policy_loss(logps.bfloat16().double(), old.bfloat16().double(), seq_adv.double(), mask)
    assert loss_bf16.dtype == torch.float32 and abs(loss_bf16.item() - loss_f64.item()) < 1e-6
    with pytest.raises(ValueError, match=r"old_logps has shape \(3, 5\), expected \(3, 6\)"):
        ppo_policy_loss(logps, old[:, :5], seq_adv, mask)
    with pytest.raises(ValueError, match=r"advantages has shape \(2,\), expected \(3,\)"):
        ppo_policy_loss(logps, old, seq_adv[:2], mask)
    with pytest.raises(ValueError, match=r"clip_eps \(0.0\) must be in \(0, 1\)"):
        ppo_policy_loss(logps, old, seq_adv, mask, clip_eps=0.0)
    with pytest.raises(ValueError, match=r"dual_clip \(1.0\) must be > 1"):
        ppo_policy_loss(logps, old, seq_adv, mask, dual_clip=1.0)


def test_ppo_value_loss_by_hand_and_naive_loop():
    """clip 0.2, R = 2, V_old = 0.5:
    V = 1.0: error (1 - 2)^2 = 1, V_clip = 0.5 + 0.2 = 0.7, (0.7 - 2)^2 = 1.69 -> loss 0.845, gradient 0
    V = 0.6: inside the clip, both errors 1.96 -> loss 0.98, gradient V - R = -1.4
    token mean over 2 tokens: 0.9125, gradients (0, -0.7); value_clip_frac 1/2."""
    values = torch.tensor([[1.0, 0.6, 123.0]], requires_grad=True)
    old = torch.tensor([[0.5, 0.5, 0.0]])
    returns = torch.tensor([[2.0, 2.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, diag = ppo_value_loss(values, old, returns, mask, clip=0.2)
    loss.backward()
    assert abs(loss.item() - 0.9125) < 1e-6
    assert torch.allclose(values.grad, torch.tensor([[0.0, -0.7, 0.0]]))
    assert diag["value_clip_frac"].item() == 0.5
    unclipped, _ = ppo_value_loss(values, old, returns, mask, clip=None)
    assert abs(unclipped.item() - (0.5 * 1.0 + 0.5 * 1.96) / 2) < 1e-6
    # naive loop on random inputs, per-sequence mean
    g = torch.Generator().manual_seed(12)
    v, vo, ret = (torch.randn(4, 7, generator=g, dtype=torch.float64) for _ in range(3))
    m = ragged_mask(4, 7, g)
    rows = []
    for b in range(4):
        terms = []
        for t in range(7):
            if m[b, t]:
                vv, oo, rr = v[b, t].item(), vo[b, t].item(), ret[b, t].item()
                v_clip = oo + min(max(vv - oo, -0.3), 0.3)
                terms.append(0.5 * max((vv - rr) ** 2, (v_clip - rr) ** 2))
        if terms:
            rows.append(sum(terms) / len(terms))
    loss, _ = ppo_value_loss(v, vo, ret, m, clip=0.3, aggregation="seq_mean_token_mean")
    assert abs(loss.item() - sum(rows) / len(rows)) < 1e-12


def test_ppo_value_explained_variance_by_hand():
    """R = (1, 2, 3): V = R gives 1; V = 2 everywhere gives 1 - Var(R - 2) / Var(R) = 0;
    V = (1, 2, 4): residual (0, 0, -1), var 2/9 vs Var(R) = 2/3 -> 1 - 1/3 = 2/3."""
    ret = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    for values, expected in [([1.0, 2.0, 3.0], 1.0), ([2.0, 2.0, 2.0], 0.0), ([1.0, 2.0, 4.0], 2 / 3)]:
        _, diag = ppo_value_loss(torch.tensor([values]), torch.tensor([values]), ret, mask)
        assert abs(diag["explained_variance"].item() - expected) < 1e-6


# ---------------------------------------------------------------------------------------------
# KL estimators and token rewards


def test_kl_penalty_hand_values():
    """logp = log 0.5, ref = log 0.25: log r = log 0.5 = -ln 2.
    k1 = ln 2, k2 = (ln 2)^2 / 2, k3 = (0.5 - 1) + ln 2."""
    lp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    assert abs(kl_penalty(lp, ref, "k1").item() - LN2) < 1e-6
    assert abs(kl_penalty(lp, ref, "k2").item() - LN2**2 / 2) < 1e-6
    assert abs(kl_penalty(lp, ref, "k3").item() - (LN2 - 0.5)) < 1e-6
    masked = kl_penalty(torch.tensor([[0.0, float("nan")]]), torch.tensor([[0.0, 5.0]]), "k3",
                        mask=torch.tensor([[True, False]]))
    assert torch.equal(masked, torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"kind 'k4' is not one of \('k1', 'k2', 'k3'\)"):
        kl_penalty(lp, ref, "k4")


def test_kl_estimators_expectations_and_gradients_exactly():
    """Exact expectations over a categorical pi (no sampling): E_pi[k1] = E_pi[k3] = KL(pi || q).
    As losses on on-policy samples (pi held fixed as the sampling weight, gradient through logp):
    E[grad k2] = grad KL(pi || q) and E[grad k3] = grad KL(q || pi), E[grad k1] = 0."""
    g = torch.Generator().manual_seed(13)
    theta = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    log_q = torch.randn(6, generator=g, dtype=torch.float64).log_softmax(0)
    log_pi = theta.log_softmax(0)
    pi = log_pi.exp().detach()
    reverse_kl = (log_pi.exp() * (log_pi - log_q)).sum()
    forward_kl = (log_q.exp() * (log_q - log_pi)).sum()
    for kind in ("k1", "k3"):
        assert abs((pi * kl_penalty(log_pi, log_q, kind)).sum().item() - reverse_kl.item()) < 1e-12

    def expected_grad(kind):
        return torch.autograd.grad((pi * kl_penalty(log_pi, log_q, kind)).sum(), theta, retain_graph=True)[0]

    def true_grad(value):
        return torch.autograd.grad(value, theta, retain_graph=True)[0]

    assert torch.allclose(expected_grad("k2"), true_grad(reverse_kl), atol=1e-12)
    assert torch.allclose(expected_grad("k3"), true_grad(forward_kl), atol=1e-12)
    assert torch.allclose(expected_grad("k1"), torch.zeros(6, dtype=torch.float64), atol=1e-12)


def test_token_level_rewards_by_hand():
    """mask rows (0 1 1 0), (1 1 1 1), (0 1 0 1) -> last tokens at 2, 3, 3; scores (1, 2, 3);
    kl 0.1 everywhere, coef 0.5: -0.05 at each masked-in token, nothing elsewhere."""
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 1]], dtype=torch.bool)
    rewards = token_level_rewards(torch.tensor([1.0, 2.0, 3.0]), mask, kl=torch.full((3, 4), 0.1), kl_coef=0.5)
    expected = torch.tensor([[0.0, -0.05, 0.95, 0.0],
                             [-0.05, -0.05, -0.05, 1.95],
                             [0.0, -0.05, 0.0, 2.95]])
    assert torch.allclose(rewards, expected)
    assert torch.equal(token_level_rewards(torch.tensor([1.0, 2.0, 3.0]), mask),
                       torch.tensor([[0.0, 0, 1, 0], [0, 0, 0, 2], [0, 0, 0, 3]]))
    with pytest.raises(ValueError, match=r"rows \[1\] have no masked-in token"):
        token_level_rewards(torch.ones(2), torch.tensor([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match=r"kl_coef \(0.1\) > 0 needs the per-token kl"):
        token_level_rewards(torch.ones(3), mask, kl_coef=0.1)


# ---------------------------------------------------------------------------------------------
# GRPO


def test_grpo_advantages_by_hand():
    """Group (1, 0, 0, 1): mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = sqrt(1/3),
    advantages +-0.5 / sqrt(1/3) = +-sqrt(3)/2. Group (0.1, 0.1, 0.1, 0.1): all equal -> exactly 0.
    Without std: +-0.5."""
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.1, 0.1, 0.1, 0.1])
    adv = grpo_advantages(rewards, group_size=4)
    h = math.sqrt(3) / 2
    assert torch.allclose(adv[:4], torch.tensor([h, -h, -h, h]), atol=1e-5)
    assert torch.equal(adv[4:], torch.zeros(4))
    assert torch.allclose(grpo_advantages(rewards, 4, normalize_std=False)[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    assert torch.equal(grpo_advantages(rewards, 4, normalize_std=False)[4:], torch.zeros(4))
    # group of two: (3, 1): mean 2, std sqrt(2): (1/sqrt 2, -1/sqrt 2)
    assert torch.allclose(grpo_advantages(torch.tensor([3.0, 1.0]), 2), torch.tensor([1, -1]) / math.sqrt(2), atol=1e-5)
    # Eight float32 rewards 0.3: r - mean is 3e-8, not 0, and std 3e-8 is below eps, so without
    # the all-equal rule the group would get a spurious advantage of ~0.03.
    noisy = torch.cat([torch.full((8,), 0.3), torch.arange(8.0)])
    assert torch.equal(grpo_advantages(noisy, 8)[:8], torch.zeros(8))
    with pytest.raises(ValueError, match=r"number of rewards \(8\) must be divisible by group_size \(3\)"):
        grpo_advantages(rewards, 3)
    with pytest.raises(ValueError, match=r"group_size \(1\) must be >= 2"):
        grpo_advantages(rewards, 1)


# ---------------------------------------------------------------------------------------------
# reward and critique models


def test_reward_loss_by_hand():
    """chosen (2, 0), rejected (1, 1), margin 0.5: differences (1, -1) minus margin (0.5, -1.5);
    losses log(1 + e^-0.5), log(1 + e^1.5); accuracy 1/2, margin mean 0.
    d loss / d chosen_i = -sigmoid(-(d_i - m)) / 2."""
    chosen = torch.tensor([2.0, 0.0], requires_grad=True)
    loss, diag = reward_loss(chosen, torch.tensor([1.0, 1.0]), margin=0.5)
    loss.backward()
    assert abs(loss.item() - (softplus(-0.5) + softplus(1.5)) / 2) < 1e-6
    sig = [1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-1.5))]
    assert torch.allclose(chosen.grad, -torch.tensor(sig) / 2)
    assert diag["accuracy"].item() == 0.5 and diag["margin"].item() == 0.0
    per_pair, _ = reward_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]), margin=torch.tensor([0.0, 1.0]))
    assert abs(per_pair.item() - (softplus(-1.0) + softplus(2.0)) / 2) < 1e-6
    with pytest.raises(ValueError, match=r"rejected_scores has shape \(3,\), expected \(2,\)"):
        reward_loss(torch.zeros(2), torch.zeros(3))


def test_critique_loss_binary_by_hand():
    """logits (0, ln 3, -ln 3), labels (1, 0, 0): p = (1/2, 3/4, 1/4);
    losses -log 1/2 = ln 2, -log(1 - 3/4) = ln 4, -log(1 - 1/4) = ln(4/3); mean of the three.
    class_weights (1, 3): w = (3, 1, 1): (3 ln 2 + ln 4 + ln(4/3)) / 5.
    accuracy: (0 > 0) != 1 wrong, (ln 3 > 0) != 0 wrong, right: 1/3. Soft label 0.25 at logit 0: ln 2."""
    logits = torch.tensor([0.0, LN3, -LN3])
    labels = torch.tensor([1, 0, 0])
    loss, diag = critique_loss(logits, labels)
    assert abs(loss.item() - (LN2 + math.log(4) + math.log(4 / 3)) / 3) < 1e-6
    assert abs(diag["accuracy"].item() - 1 / 3) < 1e-7
    assert abs(diag["mean_prob"].item() - 0.5) < 1e-7
    weighted, _ = critique_loss(logits, labels.bool(), class_weights=(1.0, 3.0))
    assert abs(weighted.item() - (3 * LN2 + math.log(4) + math.log(4 / 3)) / 5) < 1e-6
    soft, _ = critique_loss(torch.tensor([0.0]), torch.tensor([0.25]))
    assert abs(soft.item() - LN2) < 1e-6
    big = torch.tensor([200.0, -200.0], requires_grad=True)
    loss, _ = critique_loss(big, torch.tensor([0.0, 1.0]))
    loss.backward()
    assert abs(loss.item() - 200.0) < 1e-3 and torch.isfinite(big.grad).all()


def test_critique_loss_multiclass_and_errors():
    g = torch.Generator().manual_seed(14)
    logits = torch.randn(6, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    weights = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    loss, diag = critique_loss(logits, labels, class_weights=weights)
    assert abs(loss.item() - F.cross_entropy(logits, labels, weight=weights).item()) < 1e-12
    assert abs(critique_loss(logits, labels)[0].item() - F.cross_entropy(logits, labels).item()) < 1e-12
    assert diag["accuracy"].item() == (logits.argmax(1) == labels).double().mean().item()
    with pytest.raises(ValueError, match=r"binary labels must lie in \[0, 1\], got min 0.0, max 2.0"):
        critique_loss(torch.zeros(2), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        critique_loss(logits, labels + 1)
    with pytest.raises(ValueError, match=r"class_weights has shape \(2,\), expected \(3,\)"):
        critique_loss(logits, labels, class_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match=r"logits must be \(B,\) for a binary or \(B, C\) for a multi-class critique, got shape \(2, 3, 4\)"):
        critique_loss(torch.zeros(2, 3, 4), torch.zeros(2))
