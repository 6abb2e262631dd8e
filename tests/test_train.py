"""The Trainer: the first update against a hand-rolled AdamW, accumulation against one big batch,
the LR schedule against values worked out by hand, exact resume after a kill, damaged
checkpoints, the NaN guard, evaluation, and argparse generated from the config dataclass."""
import copy
import json
import math
import random
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mathlm.batching import BatchIterator, SFTExample, collate_padded
from mathlm.checkpoint import load_hf_checkpoint
from mathlm.cli import config_parser, parse_config
from mathlm.config import ModelConfig
from mathlm.losses import RunningLoss
from mathlm.model import Transformer
from mathlm.train import TrainConfig, Trainer, causal_lm_loss, loss_normalization, lr_at, normalized_by
from mathlm.train_checkpoint import CheckpointError, list_checkpoints, verify_checkpoint

MODEL = dict(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=64, max_seq_len=32)


def tiny_model(seed=0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(ModelConfig(**MODEL))


def examples(n=48, seed=1) -> list[SFTExample]:
    """Lengths 4..20 and prompts of different lengths: micro-batches hold different target counts."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(4, 21, (1,), generator=g))
        ids = torch.randint(3, 64, (length,), generator=g).tolist()
        out.append(SFTExample(ids, int(torch.randint(1, length - 1, (1,), generator=g))))
    return out


def batches(batch_size=4, seed=0, **kw) -> BatchIterator:
    return BatchIterator(examples(), batch_size, partial(collate_padded, pad_id=0), seed=seed, **kw)


def config(tmp_path, **kw) -> TrainConfig:
    base = dict(lr=1e-2, warmup_steps=0, max_steps=6, weight_decay=0.1, log_every=1, out_dir=str(tmp_path),
                keep_last=0)
    return TrainConfig(**{**base, **kw})


def losses(out_dir) -> dict[int, float]:
    with open(f"{out_dir}/metrics.jsonl") as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------ one update


def test_first_step_equals_hand_rolled_adamw(tmp_path):
    """Gradient of the response-token mean cross-entropy (F.cross_entropy, not mathlm.losses),
    clipped to max_grad_norm, then AdamW's first step written out in float64:
        m = (1 - b1) g, v = (1 - b2) g^2, p <- p (1 - lr wd) - lr (m / (1 - b1)) / (sqrt(v / (1 - b2)) + eps)
    with wd = 0 for norms (1-D) and the embedding. wd is large so a wrong group shows."""
    cfg = config(tmp_path, lr=1e-2, weight_decay=0.5, max_grad_norm=0.05, betas=(0.8, 0.9), eps=1e-6)
    model = tiny_model()
    before = params(model)
    ref = copy.deepcopy(model)
    it = batches(8, shuffle=False)
    batch = collate_padded(examples()[:8], pad_id=0)
    Trainer(model, cfg, causal_lm_loss, it).train(num_steps=1)

    logits = ref(batch["tokens"])
    mask = batch["loss_mask"]
    loss = F.cross_entropy(logits[mask], batch["labels"][mask])
    loss.backward()
    grads = {n: p.grad.double() for n, p in ref.named_parameters()}
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    assert norm > cfg.max_grad_norm  # clipping is exercised
    scale = cfg.max_grad_norm / (norm + 1e-6)
    b1, b2 = cfg.betas
    for name, p in before.items():
        g = grads[name] * scale
        wd = 0.0 if p.ndim < 2 or name == "embed_tokens.weight" else cfg.weight_decay
        m, v = (1 - b1) * g, (1 - b2) * g * g
        expected = p.double() * (1 - cfg.lr * wd) - cfg.lr * (m / (1 - b1)) / ((v / (1 - b2)).sqrt() + cfg.eps)
        torch.testing.assert_close(model.state_dict()[name].double(), expected, atol=2e-6, rtol=0, msg=name)


def test_accumulation_over_micro_batches_equals_one_big_batch(tmp_path):
    """4 micro-batches of 2 examples with grad_accum=4 == 1 batch of 8: same losses, same weights
    (the examples have different target counts, so only the token-level normalisation agrees).
    The mean of micro-batch means (a loss_fn normalized by micro-batches) differs measurably.
    eps = 1e-3 keeps AdamW's g / (|g| + eps) smooth where g ~ 0, so float rounding in the gradient
    cannot flip an update's sign."""
    big = tiny_model()
    Trainer(big, config(tmp_path / "big", max_steps=3, eps=1e-3), causal_lm_loss, batches(8, shuffle=False)).train()
    acc = tiny_model()
    Trainer(acc, config(tmp_path / "acc", max_steps=3, eps=1e-3, grad_accum=4), causal_lm_loss,
            batches(2, shuffle=False)).train()
    lb, la = losses(tmp_path / "big"), losses(tmp_path / "acc")
    assert la == pytest.approx(lb, rel=1e-6, abs=0)
    for name, p in big.state_dict().items():
        torch.testing.assert_close(acc.state_dict()[name], p, atol=1e-6, rtol=1e-6)

    @normalized_by("micro_batches")
    def mean_of_means(model, batch):
        return causal_lm_loss(model, batch)

    naive = tiny_model()
    Trainer(naive, config(tmp_path / "naive", max_steps=3, eps=1e-3, grad_accum=4), mean_of_means, batches(2, shuffle=False)).train()
    assert abs(losses(tmp_path / "naive")[1] - lb[1]) > 1e-3


def test_accumulation_of_a_per_sequence_loss_averages_micro_batches(tmp_path):
    """A loss_fn normalized by micro-batches is a per-micro-batch mean; here the mean over sequences
    of each sequence's token mean (the unit of DPO-style losses). Equal-size micro-batches then
    average to the big batch's value, so 4 x 2 with grad_accum=4 == 1 x 8."""
    @normalized_by("micro_batches")
    def per_sequence(model, batch):
        logits = model(batch["tokens"])
        logp = torch.log_softmax(logits, -1).gather(-1, batch["labels"].clamp_min(0)[..., None])[..., 0]
        mask = batch["loss_mask"]
        return (-(logp * mask).sum(1) / mask.sum(1)).mean(), {}

    big, acc = tiny_model(), tiny_model()
    Trainer(big, config(tmp_path / "big", max_steps=2, eps=1e-3), per_sequence, batches(8, shuffle=False)).train()
    Trainer(acc, config(tmp_path / "acc", max_steps=2, eps=1e-3, grad_accum=4), per_sequence,
            batches(2, shuffle=False)).train()
    assert losses(tmp_path / "acc") == pytest.approx(losses(tmp_path / "big"), rel=1e-6, abs=0)
    for name, p in big.state_dict().items():
        torch.testing.assert_close(acc.state_dict()[name], p, atol=1e-6, rtol=1e-6)


def test_lr_schedule_values_worked_out_by_hand(tmp_path):
    """lr 1, warmup 2, max_steps 6, min ratio 0.1. Warmup: (s + 1) / 2 -> 0.5, 1.0. Then progress
    p = (s - 2) / 4 for s = 2..5: 0, .25, .5, .75.
    cosine 0.1 + 0.45 (1 + cos(pi p)): 1.0, 0.868198, 0.55, 0.231802
    linear 1 - 0.9 p:                  1.0, 0.775, 0.55, 0.325;  constant: 1.0."""
    expected = {"cosine": [0.5, 1.0, 1.0, 0.8681981, 0.55, 0.2318019],
                "linear": [0.5, 1.0, 1.0, 0.775, 0.55, 0.325],
                "constant": [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]}
    for schedule, values in expected.items():
        cfg = config(tmp_path, lr=1.0, warmup_steps=2, max_steps=6, min_lr_ratio=0.1, schedule=schedule)
        assert [lr_at(s, cfg) for s in range(6)] == pytest.approx(values, abs=1e-6)
    # ... and the optimizer really runs at them
    cfg = config(tmp_path, lr=1.0, warmup_steps=2, max_steps=6, min_lr_ratio=0.1, schedule="cosine")
    model = tiny_model()
    trainer = Trainer(model, cfg, normalized_by("micro_batches")(lambda m, b: ((m.norm.weight ** 2).sum(), {})))
    used = []
    for _ in range(6):
        trainer.step([{}])
        used.append(trainer.optimizer.param_groups[0]["lr"])
    assert used == pytest.approx(expected["cosine"], abs=1e-6)


def test_the_loss_contract_is_declared_not_guessed():
    """A loss says how the Trainer normalises it; a partial keeps its function's declaration, a
    loss without one is refused with a message that says what to add."""
    assert loss_normalization(causal_lm_loss) == "tokens"
    assert loss_normalization(partial(causal_lm_loss, num_target_tokens=None)) == "tokens"

    def undeclared(model, batch, num_target_tokens=None):
        return causal_lm_loss(model, batch, num_target_tokens)

    with pytest.raises(ValueError, match=r"declares normalization None; it must declare one of \('tokens', "
                                         r"'micro_batches'\) \(decorate it with @normalized_by"):
        Trainer(tiny_model(), TrainConfig(), undeclared)
    with pytest.raises(ValueError, match=r"normalization \('sum'\) must be one of"):
        normalized_by("sum")


def test_decay_groups_and_config_errors():
    cfg = TrainConfig(weight_decay=0.3)
    trainer = Trainer(tiny_model(), cfg, causal_lm_loss)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    decayed = sorted(names[id(p)] for g in trainer.optimizer.param_groups if g["weight_decay"] for p in g["params"])
    assert decayed == sorted(n for n, p in trainer.model.named_parameters() if p.ndim == 2 and "embed" not in n)
    with pytest.raises(ValueError, match=r"schedule \('exp'\) must be one of \('cosine', 'linear', 'constant'\)"):
        TrainConfig(schedule="exp")
    with pytest.raises(ValueError, match=r"grad_accum \(0\) must be >= 1"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ValueError, match=r"betas \(\(0.9, 1.0\)\) must be two values in \[0, 1\)"):
        TrainConfig(betas=(0.9, 1.0))


@pytest.mark.parametrize("switch", ["activation_checkpointing",
                                    pytest.param("compile", marks=pytest.mark.slow)])  # inductor on CPU: ~2 min
def test_speed_switches_leave_the_losses_unchanged(tmp_path, switch):
    Trainer(tiny_model(), config(tmp_path / "plain", max_steps=3), causal_lm_loss, batches()).train()
    model = tiny_model()
    Trainer(model, config(tmp_path / "switched", max_steps=3, **{switch: True}), causal_lm_loss, batches()).train()
    assert getattr(model.config, "activation_checkpointing") == (switch == "activation_checkpointing")
    assert losses(tmp_path / "switched") == pytest.approx(losses(tmp_path / "plain"), abs=1e-5, rel=0)


# ------------------------------------------------------------------------------------------ resume


@normalized_by("tokens")
def noisy_loss(model, batch, num_target_tokens):
    """The SFT loss times a factor drawn from python, numpy and torch RNGs: resume must restore all three."""
    loss, metrics = causal_lm_loss(model, batch, num_target_tokens)
    return loss * (1 + 0.1 * random.random() + 0.1 * np.random.rand() + 0.1 * torch.rand(()).item()), metrics


class Killed(Exception):
    pass


@pytest.mark.parametrize("data", ["iterator", "list"])
def test_killed_and_resumed_run_repeats_the_uninterrupted_losses(tmp_path, data):
    """2N = 6 steps straight vs: N = 3 steps with a checkpoint, killed in the middle of step 4, a new
    Trainer (new model, new data iterator, scrambled RNGs) resumed from "latest", 3 more steps."""
    def data_source():
        if data == "iterator":
            return batches(4)
        source = batches(4)
        return [next(source) for _ in range(12)]  # a plain list: resume skips consumed micro-batches

    cfg = dict(max_steps=6, grad_accum=2, warmup_steps=2)
    straight = tiny_model()
    Trainer(straight, config(tmp_path / "straight", **cfg), noisy_loss, data_source()).train()

    calls = 0

    @normalized_by("tokens")
    def dies_in_step_4(model, batch, num_target_tokens):
        nonlocal calls
        calls += 1
        if calls == 8:  # step 4's second micro-batch
            raise Killed
        return noisy_loss(model, batch, num_target_tokens)

    run = tmp_path / "run"
    with pytest.raises(Killed):
        Trainer(tiny_model(), config(run, save_every=3, **cfg), dies_in_step_4, data_source()).train()
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step_00000003"]
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # a record cut short by the kill

    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    resumed_model = tiny_model(seed=99)
    resumed = Trainer(resumed_model, config(run, save_every=3, **cfg), noisy_loss, data_source())
    assert resumed.resume("latest") and resumed.global_step == 3
    resumed.train()

    expected = losses(tmp_path / "straight")
    assert list(expected) == [1, 2, 3, 4, 5, 6]
    assert losses(run) == expected  # exactly: fp32 on CPU is deterministic
    for name, p in straight.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], p), name


def test_damaged_checkpoints_name_the_file_and_the_previous_one_still_loads(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    Trainer(tiny_model(), config(straight, max_steps=4), causal_lm_loss, batches()).train()
    run = tmp_path / "run"
    Trainer(tiny_model(), config(run, max_steps=4, save_every=1), causal_lm_loss, batches()).train(num_steps=2)
    step1, step2 = list_checkpoints(run / "checkpoints")

    def fresh():
        return Trainer(tiny_model(seed=5), config(run, max_steps=4, save_every=1), causal_lm_loss, batches())

    weights = step2 / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors is truncated or altered: \d+ bytes, \d+ when saved"
                                              r".*previous checkpoint .*step_00000001 is untouched"):
        fresh().resume("latest")
    weights.write_bytes(original)

    optim = step2 / "optimizer.pt"
    data = bytearray(optim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    optim.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"optimizer.pt is corrupt: its sha256 differs"):
        fresh().resume(step2)
    (step2 / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"manifest.json is missing: the save of step_00000002 did not finish"):
        fresh().resume(step2)

    # A save that dies half-way leaves no step folder and no temporary folder behind.
    trainer = fresh()
    trainer.resume(step1)
    import mathlm.train_checkpoint as tc
    real_save = tc.torch.save

    def failing_save(obj, f, *a, **k):
        if str(f).endswith(tc.STATE_FILE):
            raise OSError("disk full")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(tc.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save()
    monkeypatch.undo()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001", "step_00000002"]

    # The previous good checkpoint resumes to the uninterrupted run's losses.
    verify_checkpoint(step1)
    trainer.train()
    assert losses(run) == losses(straight)


def test_keep_last_stateful_extras_and_checkpoint_is_a_hugging_face_folder(tmp_path):
    model = tiny_model()
    running = RunningLoss(decay=0.5)

    @normalized_by("tokens")
    def loss_fn(model, batch, num_target_tokens):
        loss, metrics = causal_lm_loss(model, batch, num_target_tokens)
        running.update(range(len(metrics["per_sample_nll"])), metrics["per_sample_nll"])
        return loss, metrics

    cfg = config(tmp_path, max_steps=4, save_every=1, keep_last=2)
    Trainer(model, cfg, loss_fn, batches(), stateful={"running": running}).train()
    kept = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in kept] == ["step_00000003", "step_00000004"]
    loaded = load_hf_checkpoint(kept[-1])
    for name, p in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], p), name
    state = torch.load(kept[-1] / "trainer_state.pt", weights_only=True)
    assert state["step"] == 4 and state["data"]["iterator"]["batch"] == 4 % batches().batches_per_epoch
    restored = RunningLoss()
    Trainer(tiny_model(), cfg, loss_fn, batches(), stateful={"running": restored}).resume()
    assert restored.state_dict() == running.state_dict() and len(restored) == 4


# ------------------------------------------------------------------------------------------ NaN guard


def test_non_finite_steps_are_skipped_counted_and_stop_the_run(tmp_path):
    """Step 2's loss is NaN; step 3's loss is finite but its gradient is NaN (sqrt'(0) * 0): both
    leave weights and AdamW moments untouched. Three in a row stop the run with a clear error."""
    plan = iter(["ok", "nan_loss", "nan_grad", "ok", "nan_loss", "nan_loss", "nan_loss"])

    @normalized_by("tokens")
    def loss_fn(model, batch, num_target_tokens):
        loss, metrics = causal_lm_loss(model, batch, num_target_tokens)
        kind = next(plan)
        if kind == "nan_loss":
            loss = loss * float("nan")
        if kind == "nan_grad":
            loss = loss + torch.sqrt(model.norm.weight.sum() * 0)
        return loss, metrics

    model = tiny_model()
    trainer = Trainer(model, config(tmp_path, max_steps=10, max_nan_steps=3), loss_fn, batches())
    trainer.train(num_steps=1)
    after_1 = params(model)
    moments = {n: s["exp_avg"].clone() for n, s in zip(after_1, trainer.optimizer.state.values())}
    for expected_nan in (1, 2):
        record = trainer.train(num_steps=1)
        assert record["skipped"] and trainer.nan_steps == expected_nan
        assert all(torch.equal(model.state_dict()[n], p) for n, p in after_1.items())
        assert all(int(s["step"]) == 1 for s in trainer.optimizer.state.values())
        assert all(torch.equal(s["exp_avg"], moments[n]) for n, s in zip(after_1, trainer.optimizer.state.values()))
    assert math.isfinite(record["loss"]) and math.isnan(record["grad_norm"])
    record = trainer.train(num_steps=1)
    assert not record["skipped"] and trainer.consecutive_nan == 0
    assert not torch.equal(model.state_dict()["lm_head.weight"], after_1["lm_head.weight"])
    with pytest.raises(FloatingPointError, match=r"not finite for 3 steps in a row \(steps 5-7; last loss nan"):
        trainer.train()
    skipped = [r["step"] for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if r.get("skipped")]
    assert skipped == [2, 3, 5, 6, 7]


# ------------------------------------------------------------------------------------------ loop details


def test_eval_hook_runs_in_eval_mode_without_grad(tmp_path):
    seen = []

    def eval_fn(model):
        seen.append((trainer.global_step, model.training, torch.is_grad_enabled()))
        return {"score": trainer.global_step * 10}

    trainer = Trainer(tiny_model(), config(tmp_path, max_steps=5, eval_every=2), causal_lm_loss, batches(), eval_fn)
    trainer.train()
    assert seen == [(2, False, False), (4, False, False), (5, False, False)]
    assert trainer.model.training
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [(r["step"], r["eval/score"]) for r in records if "eval/score" in r] == [(2, 20.0), (4, 40.0), (5, 50.0)]


def test_progress_line_and_exhausted_data(tmp_path, capsys):
    data = [collate_padded(examples()[i:i + 2], pad_id=0) for i in (0, 2, 4)]
    trainer = Trainer(tiny_model(), config(tmp_path, max_steps=4, grad_accum=2), causal_lm_loss, data)
    with pytest.raises(RuntimeError, match=r"train_batches ran out after 3 micro-batches, at step 1 of max_steps 4"):
        trainer.train()
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("step 1/4 | loss ") and " tok/s | eta " in line
    assert "lr 1.00e-02" in line


# ------------------------------------------------------------------------------------------ argparse


@dataclass
class Inner:
    depth: int = 2                       # how deep


@dataclass
class RecipeConfig(TrainConfig):
    data: str = "train.jsonl"            # SFT records
    limit: int | None = None             # at most this many records
    tags: list[str] = field(default_factory=lambda: ["a"], metadata={"help": "labels for the run"})
    inner: Inner = field(default_factory=Inner)


def test_parse_config_from_the_dataclass(capsys):
    cfg = parse_config(RecipeConfig, ["--lr", "1e-3", "--no-bf16", "--betas", "0.8", "0.99", "--schedule", "linear",
                                      "--max-steps", "7", "--limit", "5", "--tags", "x", "y", "--inner.depth", "4"])
    assert (cfg.lr, cfg.bf16, cfg.betas, cfg.schedule, cfg.max_steps) == (1e-3, False, (0.8, 0.99), "linear", 7)
    assert (cfg.limit, cfg.tags, cfg.inner.depth, cfg.data) == (5, ["x", "y"], 4, "train.jsonl")
    assert parse_config(RecipeConfig, ["--limit", "none"]).limit is None
    assert parse_config(RecipeConfig, []) == RecipeConfig()
    help_text = config_parser(RecipeConfig).format_help()
    assert "peak learning rate (default: 0.0003)" in help_text and "labels for the run" in help_text
    assert "at most this many records (default: None)" in help_text
    with pytest.raises(SystemExit):
        parse_config(RecipeConfig, ["--schedule", "bogus"])
    assert "schedule ('bogus') must be one of ('cosine', 'linear', 'constant')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(RecipeConfig, ["--max_steps", "many"])
    assert "argument --max_steps/--max-steps: invalid int value: 'many'" in capsys.readouterr().err
