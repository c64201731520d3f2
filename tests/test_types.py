import pytest
import torch

from metalearn import Episode, EpisodeBatch


def make_episode(n_way=3, k=2, q=4, d=5, offset=0):
    return Episode(
        support_x=torch.randn(n_way * k, d), support_y=torch.arange(n_way).repeat_interleave(k),
        query_x=torch.randn(n_way * q, d), query_y=torch.arange(n_way).repeat_interleave(q),
        class_ids=torch.arange(n_way) + offset)


def test_stack_index_and_slice_round_trip():
    eps = [make_episode(offset=i) for i in range(4)]
    batch = EpisodeBatch.stack(eps)
    assert len(batch) == 4 and batch.support_x.shape == (4, 6, 5)
    for i, ep in enumerate(eps):
        assert torch.equal(batch[i].query_x, ep.query_x)
        assert torch.equal(batch[i].class_ids, ep.class_ids)
    part = batch[1:3]
    assert isinstance(part, EpisodeBatch) and torch.equal(part.class_ids, batch.class_ids[1:3])
    assert [len(p) for p in batch.split(2)] == [2, 2]
    assert torch.equal(torch.cat([p.support_x for p in batch.split(2)]), batch.support_x)


def test_stack_refuses_tasks_of_different_shape():
    with pytest.raises(ValueError, match="equal shape"):
        EpisodeBatch.stack([make_episode(k=1), make_episode(k=2)])
    with pytest.raises(ValueError, match="empty"):
        EpisodeBatch.stack([])


def test_split_names_valid_sizes():
    batch = EpisodeBatch.stack([make_episode() for _ in range(6)])
    with pytest.raises(ValueError, match=r"valid: \[1, 2, 3, 6\]"):
        batch.split(4)


def test_episode_checks_sizes_and_properties():
    ep = make_episode()
    assert ep.n_way == 3 and ep.is_classification
    with pytest.raises(ValueError, match="one target per support"):
        Episode(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="share the input shape"):
        Episode(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))


def test_to_moves_every_tensor_and_is_frozen():
    batch = EpisodeBatch.stack([make_episode()])
    moved = batch.to("cpu")
    assert moved.class_ids is not None and moved.task_params is None
    with pytest.raises(AttributeError):
        batch.support_x = None  # frozen dataclass
