import pytest
import torch

from seesaw_ds.errors import SeesawConfigError
from seesaw_ds.model import GPT, GPTConfig, build_model, count_parameters, model_config

VOCAB = 97


def _micro(**overrides):
    return build_model("micro", vocab_size=VOCAB, seq_length=32, **overrides)


def _batch(seed=0, batch=4, length=32):
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_shapes_and_loss_output():
    model = _micro()
    tokens = _batch()
    assert model(tokens).shape == (4, 32, VOCAB)
    out = model(tokens, tokens.roll(-1, dims=1))
    assert out.loss.shape == out.ce.shape == out.z_loss.shape == ()
    assert out.loss.requires_grad and not out.ce.requires_grad
    # Near-uniform predictions at init.
    assert abs(out.ce.item() - torch.log(torch.tensor(float(VOCAB))).item()) < 0.3


def test_z_loss_adds_a_positive_term():
    tokens = _batch()
    labels = tokens.roll(-1, dims=1)
    out = _micro()(tokens, labels)
    assert out.z_loss.item() > 0
    assert torch.allclose(out.loss, out.ce + out.z_loss)
    plain = _micro(z_loss_coef=0.0)(tokens, labels)
    assert plain.z_loss.item() == 0 and torch.allclose(plain.loss, out.ce)


def test_loss_mask_weights_tokens():
    model = _micro()
    tokens = _batch()
    labels = tokens.roll(-1, dims=1)
    mask = torch.zeros_like(tokens, dtype=torch.float)
    mask[:, :8] = 1
    masked = model(tokens, labels, mask)
    first = model.loss(model(tokens)[:, :8], labels[:, :8])
    assert torch.allclose(masked.loss, first.loss, atol=1e-6)


def test_loss_decreases_with_adamw():
    torch.manual_seed(0)
    model = _micro()
    tokens = _batch(batch=8)
    labels = tokens.roll(-1, dims=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(15):
        out = model(tokens, labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.ce.item())
    assert losses[-1] < losses[0] - 0.5


def test_causal_later_tokens_do_not_change_earlier_logits():
    model = _micro().eval()
    tokens = _batch(batch=2)
    changed = tokens.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    assert torch.allclose(before[:, :20], after[:, :20], atol=1e-5)
    assert not torch.allclose(before[:, 20:], after[:, 20:])


def test_init_is_deterministic_given_the_seed():
    first, second, other = _micro(seed=3), _micro(seed=3), _micro(seed=4)
    for (name, a), b, c in zip(first.state_dict().items(), second.state_dict().values(),
                               other.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(first.embed.weight, other.embed.weight)


@pytest.mark.parametrize("shape, size", [("150m", 150e6), ("300m", 300e6), ("600m", 600e6)])
def test_paper_shapes_have_their_named_size(shape, size):
    with torch.device("meta"):
        model = build_model(shape)
    assert model.config.vocab_size == 32128 and model.config.seq_length == 1024
    non_embedding = count_parameters(model, exclude_embeddings=True)
    assert abs(non_embedding - size) / size < 0.06
    embeddings = 2 * 32128 * model.config.d_model
    assert count_parameters(model) == non_embedding + embeddings


def test_tiny_shape_size():
    config = model_config("tiny")
    assert (config.d_model, config.n_layers, config.n_heads, config.d_mlp) == (128, 4, 4, 512)
    assert 1.2e6 < count_parameters(GPT(config)) < 1.4e6


def test_bf16_autocast_and_bf16_weights():
    tokens = _batch()
    labels = tokens.roll(-1, dims=1)
    reference = _micro()(tokens, labels).ce
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model = _micro()
        out = model(tokens, labels)
    out.loss.backward()
    assert model(tokens).dtype == torch.float32
    half = _micro().to(torch.bfloat16)
    out16 = half(tokens, labels)
    out16.loss.backward()
    assert out16.loss.dtype == torch.float32
    assert half.lm_head.weight.grad.dtype == torch.bfloat16
    for value in (out.ce, out16.ce):
        assert torch.isfinite(value) and abs(value - reference) < 0.05


def test_config_errors_name_the_field():
    with pytest.raises(SeesawConfigError, match="d_model"):
        model_config("micro", n_heads=3)
    with pytest.raises(SeesawConfigError, match="unknown"):
        model_config("huge")
    with pytest.raises(SeesawConfigError, match="bogus"):
        model_config("micro", bogus=1)
    with pytest.raises(SeesawConfigError, match="vocab_size"):
        GPTConfig(vocab_size=0, seq_length=8, d_model=8, n_layers=1, n_heads=2, d_mlp=8)
    with pytest.raises(ValueError, match="seq_length"):
        _micro()(torch.zeros(1, 33, dtype=torch.long))
