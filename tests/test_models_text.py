"""Text encoders over token ids (issue 18, points 5-7): masks, learning, the functional core,
the tiny-BERT path and self-supervised pretraining. All synthetic: int64 id rows padded with 0."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from metalearn.algorithms import MAML, MAMLConfig, ProtoNet
from metalearn.data.base import ClassDataset
from metalearn.data.samplers import EpisodeSampler, FixedEpisodes
from metalearn.models import BACKBONES, PretrainedTextEncoder, TextBag, TextCNN, TextTransformer
from metalearn.models.weights import load_backbone
from metalearn.train.text_pretrain import pretrain_text_encoder, save_text_encoder
from metalearn.types import Episode, EpisodeBatch

V, L = 55, 16  # vocabulary (0 = pad, 1..24 topic tokens, 25..54 shared noise) and row length


def tiny(kind: str, **kw):
    if kind == "cnn":
        return TextCNN(V, embed_dim=kw.pop("d", 16), channels=kw.pop("d2", 8), kernel_sizes=(1, 2), **kw)
    kw.pop("d2", None)  # the CNN's channels
    return TextTransformer(V, dim=kw.pop("d", 16), depth=1, heads=2, max_length=L, **kw)


def intent_corpus(n_classes=20, per_class=30, n_topic=24, n_noise=30, seed=0):
    """Rows ``(n, L)``: each class is a pair of topic tokens (shared across classes) placed among
    6..15 shared noise tokens, then padding; labels ``(n,)``."""
    g = torch.Generator().manual_seed(seed)
    pairs = list(itertools.combinations(range(1, n_topic + 1), 2))
    pick = torch.randperm(len(pairs), generator=g)[:n_classes]
    rows, labels = [], []
    for c in range(n_classes):
        own = torch.tensor(pairs[int(pick[c])])
        for _ in range(per_class):
            n = int(torch.randint(6, L, (1,), generator=g))
            toks = torch.randint(n_topic + 1, n_topic + 1 + n_noise, (n,), generator=g)
            toks[torch.randperm(n, generator=g)[:2]] = own
            row = torch.zeros(L, dtype=torch.int64)
            row[:n] = toks
            rows.append(row)
            labels.append(c)
    return torch.stack(rows), np.array(labels)


def split(ids, y, n_train=12):
    train = ClassDataset(ids[y < n_train], y[y < n_train], [str(i) for i in range(n_train)])
    test = ClassDataset(ids[y >= n_train], y[y >= n_train] - n_train,
                        [str(i) for i in range(int(y.max()) + 1 - n_train)])
    return train, test


def protonet_accuracy(algo, episodes) -> float:
    with torch.no_grad():
        return float(np.mean([(algo.adapt(ep.support_x, ep.support_y)(ep.query_x).argmax(-1) == ep.query_y)
                              .float().mean().item() for ep in episodes]))


def id_batch(n_tasks=3, n_way=3, k_shot=2, n_query=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    eps = []
    for _ in range(n_tasks):
        sy, qy = torch.arange(n_way).repeat_interleave(k_shot), torch.arange(n_way).repeat_interleave(n_query)
        sx, qx = torch.randint(1, V, (len(sy), L), generator=g), torch.randint(1, V, (len(qy), L), generator=g)
        sx[:, 9:], qx[:, 11:] = 0, 0
        eps.append(Episode(sx, sy, qx, qy))
    return EpisodeBatch.stack(eps)


@pytest.fixture
def one_thread():
    """Training tests run on one intra-op thread: as fast on these tiny models, and not slowed
    many times over when other processes share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------- shapes and masks


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_shapes_padding_invariance_and_all_pad_rows(kind):
    torch.manual_seed(0)
    net = tiny(kind).eval()
    assert net(torch.randint(1, V, (4, L))).shape == (4, net.out_dim)
    assert tiny(kind, out_features=5)(torch.randint(1, V, (4, L))).shape == (4, 5)
    content = torch.randint(1, V, (3, 7))
    short = torch.nn.functional.pad(content, (0, 2))  # 7 tokens + 2 pads
    long = torch.nn.functional.pad(content, (0, L - 7))  # the same tokens + 9 pads
    assert torch.allclose(net(short), net(long), atol=1e-6)
    other = long.clone()
    other[:, 8] = 5  # a real token where the pads were: the features move
    assert not torch.allclose(net(other), net(long), atol=1e-3)
    empty = net(torch.zeros(2, L, dtype=torch.int64))
    assert torch.isfinite(empty).all()


def test_token_ids_and_lengths_are_checked():
    with pytest.raises(ValueError, match="token ids of shape"):
        tiny("cnn")(torch.randn(2, L))
    with pytest.raises(ValueError, match="max_length"):
        tiny("transformer")(torch.randint(1, V, (2, L + 1)))
    with pytest.raises(ValueError, match="heads .* must divide dim"):
        TextTransformer(V, dim=10, heads=4)


def test_backbone_names_and_their_options(capsys):
    from metalearn.cli import main

    assert BACKBONES["text-cnn"] is TextCNN and BACKBONES["text-transformer"] is TextTransformer
    assert BACKBONES["hf-text"] is PretrainedTextEncoder
    for name, option in [("text-cnn", "model.kernel_sizes"), ("text-transformer", "model.max_length"),
                         ("hf-text", "model.pooling")]:
        assert main(["list", "--options", name]) == 0
        out = capsys.readouterr().out
        assert option in out and "model.pad_id" in out and "model.out_features" in out


# ---------------------------------------------------------------- learning


@pytest.mark.parametrize(("kind", "steps", "target"), [("cnn", 150, 0.95), ("transformer", 100, 0.85)])
def test_a_tiny_encoder_learns_a_separable_text_task_with_protonet(kind, steps, target, one_thread):
    """5-way 5-shot on held-out classes; the CNN reaches 95% in about 3 s on one core, the
    transformer learns more slowly (about 93% after 300 steps)."""
    train, test = split(*intent_corpus())
    torch.manual_seed(0)
    algo = ProtoNet(tiny(kind, d=32, d2=32))
    episodes = list(FixedEpisodes(test, 5, 5, 5, 50, seed=1))
    before = protonet_accuracy(algo, episodes)
    opt = torch.optim.Adam(algo.parameters(), 3e-3)
    sampler = EpisodeSampler(train, 5, 5, 5, seed=0)
    for _ in range(steps):
        loss, _ = algo.meta_loss(sampler.sample_batch(2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = protonet_accuracy(algo, episodes)
    assert after >= target and after > before + 0.15, (before, after)


# ---------------------------------------------------------------- the functional core


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
@pytest.mark.parametrize("first_order", [False, True])
def test_maml_vmap_equals_loop_on_text(kind, first_order):
    batch = id_batch()
    results = {}
    for mode in ("loop", "vmap"):
        torch.manual_seed(0)
        algo = MAML(tiny(kind, out_features=3), MAMLConfig(inner_lr=0.3, inner_steps=2,
                                                            first_order=first_order, task_mode=mode))
        algo.zero_grad()
        loss, metrics = algo.meta_loss(batch)
        loss.backward()
        results[mode] = loss.detach(), [p.grad.clone() for p in algo.parameters()], metrics
    (l1, g1, m1), (l2, g2, m2) = results["loop"], results["vmap"]
    assert torch.allclose(l1, l2, atol=1e-6) and m1["accuracy"] == pytest.approx(m2["accuracy"])
    assert all(g.abs().sum() > 0 for g in g1[-2:])  # the head's gradient is not trivially zero
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4), (a - b).abs().max()


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_second_order_meta_gradient_matches_finite_differences_under_vmap(kind):
    torch.manual_seed(0)
    batch = id_batch(n_tasks=2)
    algo = MAML(tiny(kind, d=8, d2=4, out_features=3).double(),
                MAMLConfig(inner_lr=0.5, inner_steps=2, task_mode="vmap"))
    loss, _ = algo.meta_loss(batch)
    loss.backward()
    params = list(algo.parameters())
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((p.grad * d).sum() for p, d in zip(params, direction))
    eps = 1e-5
    with torch.no_grad():
        for p, d in zip(params, direction):
            p += eps * d
        up = algo.meta_loss(batch)[0]
        for p, d in zip(params, direction):
            p -= 2 * eps * d
        down = algo.meta_loss(batch)[0]
        for p, d in zip(params, direction):
            p += eps * d
    assert torch.allclose(analytic, (up - down) / (2 * eps), rtol=1e-5, atol=1e-8)
    first = MAML(algo.backbone, MAMLConfig(inner_lr=0.5, inner_steps=2, task_mode="vmap", first_order=True))
    algo.zero_grad()
    first.meta_loss(batch)[0].backward()
    assert abs(float(sum((p.grad * d).sum() for p, d in zip(params, direction)) - analytic)) > 1e-6


def test_dropout_under_vmap_names_the_fix():
    algo = MAML(tiny("transformer", out_features=3, dropout=0.1), MAMLConfig(task_mode="vmap"))
    with pytest.raises(RuntimeError, match="dropout=0.0 for meta-training, or algorithm.task_mode=loop"):
        algo.meta_loss(id_batch())
    loss, _ = MAML(algo.backbone, MAMLConfig(task_mode="loop")).meta_loss(id_batch())  # the loop is fine
    assert torch.isfinite(loss)


# ---------------------------------------------------------------- a pretrained Hugging Face model


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)
    model = transformers.BertModel(config).eval()
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder)
    return folder, model


def bert_ids(n=6, seed=0):
    ids = torch.randint(1, 50, (n, 10), generator=torch.Generator().manual_seed(seed))
    ids[1, 4:] = 0
    ids[2] = 0  # all padding
    return ids


def test_tiny_bert_mean_pooling_equals_the_transformers_model(tiny_bert):
    folder, model = tiny_bert
    ids = bert_ids()
    mask = ids != 0
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    expected = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    enc = PretrainedTextEncoder(str(folder))
    assert (enc.vocab_size, enc.pad_id, enc.out_dim) == (50, 0, 16)
    assert torch.allclose(enc(ids), expected, atol=1e-6) and torch.isfinite(enc(ids)).all()
    cls = PretrainedTextEncoder(str(folder), pooling="cls")
    assert torch.allclose(cls(ids), h[:, 0], atol=1e-6)
    enc.train()  # a frozen encoder stays in eval mode: no dropout
    assert not enc.encoder.training and torch.allclose(enc(ids), expected, atol=1e-6)


def test_frozen_bert_has_only_head_parameters_and_round_trips(tiny_bert):
    folder, _ = tiny_bert
    torch.manual_seed(1)
    enc = PretrainedTextEncoder(str(folder), out_features=3)
    assert [n for n, _ in enc.named_parameters()] == ["head.weight", "head.bias"]
    assert sorted(enc.state_dict()) == ["head.bias", "head.weight"]
    torch.manual_seed(2)
    other = PretrainedTextEncoder(str(folder), out_features=3)
    ids = bert_ids()
    assert not torch.allclose(other(ids), enc(ids))
    other.load_state_dict(enc.state_dict())
    assert torch.allclose(other(ids), enc(ids))
    tuned = PretrainedTextEncoder(str(folder), freeze=False)
    assert any(n.startswith("encoder.") for n, _ in tuned.named_parameters())
    with torch.no_grad():
        tuned.encoder.embeddings.word_embeddings.weight.mul_(2)
    copy = PretrainedTextEncoder(str(folder), freeze=False)
    copy.load_state_dict(tuned.state_dict())
    tuned.eval(), copy.eval()
    assert torch.allclose(copy(ids), tuned(ids))


def test_tiny_bert_with_protonet_and_with_maml(tiny_bert):
    folder, _ = tiny_bert
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(2)
    batch = EpisodeBatch.stack([Episode(torch.randint(1, 50, (6, 8), generator=g), y,
                                        torch.randint(1, 50, (6, 8), generator=g), y) for _ in range(2)])
    tuned = PretrainedTextEncoder(str(folder), freeze=False)
    loss, metrics = ProtoNet(tuned).meta_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and tuned.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    frozen = PretrainedTextEncoder(str(folder), out_features=3)
    before = {k: v.clone() for k, v in frozen.encoder.named_buffers()}
    maml = MAML(frozen, MAMLConfig(inner_lr=0.5))  # "auto" must not vmap a transformers model
    loss, _ = maml.meta_loss(batch)
    loss.backward()
    assert frozen.head.weight.grad.abs().sum() > 0
    assert all(torch.equal(before[k], v) for k, v in frozen.encoder.named_buffers())


def test_pretrained_encoder_refuses_a_missing_folder_and_a_foreign_tokenizer(tiny_bert, tmp_path):
    folder, _ = tiny_bert
    with pytest.raises(ValueError, match="no model folder"):
        PretrainedTextEncoder(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="use the model's tokenizer"):
        PretrainedTextEncoder(str(folder), vocab_size=8000)
    with pytest.raises(ValueError, match="pads with id 3"):
        PretrainedTextEncoder(str(folder), pad_id=3)


# ---------------------------------------------------------------- self-supervised pretraining


def centroid_accuracy(encoder, ids, y) -> float:
    """Leave-nothing-out nearest-centroid accuracy of frozen, normalised features."""
    encoder.eval()
    with torch.no_grad():
        z = torch.nn.functional.normalize(encoder(ids), dim=-1)
    labels = torch.as_tensor(y)
    centroids = torch.stack([z[labels == c].mean(0) for c in range(int(labels.max()) + 1)])
    return float(((z @ centroids.T).argmax(-1) == labels).float().mean())


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_simcse_pretraining_raises_nearest_centroid_accuracy(kind, one_thread):
    """Five frequent stop-word tokens swamp random features; SimCSE, which must tell sentences
    apart, learns to look past them (at random init the centroid accuracy is 0.85 / 0.57)."""
    ids, y = intent_corpus(n_classes=12, per_class=20, n_noise=5)
    torch.manual_seed(0)
    enc = tiny(kind, d=32, d2=32)
    before = centroid_accuracy(enc, ids, y)
    losses = pretrain_text_encoder(enc, ids, method="simcse", steps=150, batch_size=64, lr=3e-3,
                                   seed=0, progress=False)
    after = centroid_accuracy(enc, ids, y)
    assert after >= 0.95 and after > before + 0.1, (before, after)
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    assert enc.dropout == 0.0 and not enc.training  # its own dropout and mode are back


@pytest.mark.parametrize("kind", ["cnn", "transformer"])
def test_mlm_loss_decreases_and_pretraining_is_deterministic(kind, one_thread):
    ids, _ = intent_corpus(n_classes=12, per_class=20)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        enc = tiny(kind)
        losses = pretrain_text_encoder(enc, ids, method="mlm", steps=80, batch_size=32, lr=1e-2,
                                       seed=3, progress=False)
        runs.append((losses, enc.state_dict()))
    losses = runs[0][0]
    # from about log(V) = 4.0 towards the entropy of the masked tokens (noise tokens are uniform)
    assert len(losses) == 80 and np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.15
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_saved_pretrained_encoder_loads_as_model_weights(tmp_path):
    ids, _ = intent_corpus(n_classes=6, per_class=10)
    torch.manual_seed(0)
    enc = tiny("transformer", out_features=5)
    pretrain_text_encoder(enc, ids, method="simcse", steps=3, batch_size=16, progress=False)
    path = save_text_encoder(enc, tmp_path / "encoder.safetensors")
    torch.manual_seed(1)
    fresh = load_backbone(tiny("transformer", out_features=5), path)
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), fresh.state_dict().values()))
    with pytest.raises(ValueError, match="does not match the backbone"):
        load_backbone(tiny("cnn", out_features=5), path)
    with pytest.raises(TypeError, match="from-scratch TextCNN, TextTransformer or TextBag"):
        pretrain_text_encoder(torch.nn.Linear(2, 2), ids)
    with pytest.raises(ValueError, match="dropout > 0"):
        pretrain_text_encoder(enc, ids, dropout=0.0)


def test_text_bag_is_a_normalised_weighted_mean_that_ignores_padding():
    torch.manual_seed(0)
    net = TextBag(vocab_size=40, embed_dim=8)
    ids = torch.tensor([[3, 4, 4, 0, 0], [7, 0, 0, 0, 0]])
    out = net(ids)
    expected = torch.nn.functional.normalize(net.embed.weight[[3, 4, 4]].mean(0), dim=0)
    assert torch.allclose(out[0], expected, atol=1e-6)  # equal weights at the start
    assert torch.allclose(out.norm(dim=1), torch.ones(2))
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.int64)], 1)
    assert torch.allclose(net(padded), out)
    with torch.no_grad():  # a learned weight moves the bag towards its token
        net.weight.weight[4] = 5.0
        moved = net(ids)[0]
        e4 = torch.nn.functional.normalize(net.embed.weight[4], dim=0)
        assert float(moved @ e4) > float(out[0] @ e4)


def test_text_bag_bigrams_see_word_order_and_an_unseen_token_still_matches():
    torch.manual_seed(0)
    net = TextBag(vocab_size=60, embed_dim=64, bigram_buckets=97)
    a, b = torch.tensor([[5, 6, 7]]), torch.tensor([[7, 6, 5]])
    assert not torch.allclose(net(a), net(b))  # the bag of tokens alone could not tell them apart
    plain = TextBag(60, 64)
    assert torch.allclose(plain(a), plain(b), atol=1e-6)
    # two sentences sharing a rare token are closer than two that do not
    share = net(torch.tensor([[10, 11, 50], [12, 13, 50], [12, 13, 51]])).detach()
    assert float(share[0] @ share[1]) > float(share[0] @ share[2])


def test_text_bag_word_dropout_drops_tokens_only_while_training_and_simcse_takes_it():
    from metalearn.train.text_pretrain import pretrain_text_encoder

    torch.manual_seed(0)
    net = TextBag(vocab_size=40, embed_dim=16, dropout=0.5)
    ids = torch.randint(1, 40, (6, 8))
    net.eval()
    assert torch.equal(net(ids), net(ids))
    net.train()
    assert not torch.allclose(net(ids), net(ids))  # two views of the same sentences
    losses = pretrain_text_encoder(TextBag(vocab_size=40, embed_dim=16), ids.repeat(4, 1), steps=5,
                                   batch_size=8, progress=False)
    assert len(losses) == 5 and all(np.isfinite(losses))
    with pytest.raises(ValueError, match="use method='simcse'"):
        pretrain_text_encoder(TextBag(vocab_size=40, embed_dim=16), ids, method="mlm", steps=1, progress=False)
