"""A training set sharded over 2 CPU processes (gloo) gives the single-process machines exactly."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from course_lib import distributed
from course_lib.denoisers import EquivariantLocalDenoiser, IdealDenoiser, LocalDenoiser
from course_lib.softmax import OnlineSoftmax

DT = torch.float64


def _data():
    g = torch.Generator().manual_seed(0)
    Y = torch.rand(9, 2, 6, 5, generator=g, dtype=DT) * 2 - 1
    x = Y[:3] + 0.3 * torch.randn(3, 2, 6, 5, generator=g, dtype=DT)
    return Y, x, torch.tensor([0.05, 0.4, 3.0], dtype=DT)


def _machines(Y, backend, group=None):
    kw = dict(backend=backend, process_group=group)
    return {"ideal": IdealDenoiser(Y, chunk_size=2, **kw),
            "ELS": EquivariantLocalDenoiser(Y, 3, boundary="circular", chunk_size=2, **kw),
            "ELS-zeros": EquivariantLocalDenoiser(Y, 5, boundary="zeros", chunk_size=2, **kw),
            "LS": LocalDenoiser(Y, 3, chunk_size=2, **kw)}


def _worker(rank, world, init_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        Y, x, sigma = _data()
        mine = distributed.shard(Y)
        assert mine.shape[0] == (4 if rank == 0 else 5)  # uneven shards: 9 images over 2 ranks
        for backend in ("stream", "attention"):
            ref, shd = _machines(Y, backend), _machines(mine, backend, group=dist.group.WORLD)
            for name in ref:
                a, b = shd[name](x, sigma), ref[name](x, sigma)
                assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), (name, backend, (a - b).abs().max())
        ideal, full = _machines(mine, "stream", dist.group.WORLD)["ideal"], IdealDenoiser(Y)
        assert torch.allclose(ideal.log_density(x, sigma), full.log_density(x, sigma), rtol=1e-12)
        got, want = ideal.posterior_stats(x, sigma), full.posterior_stats(x, sigma)
        assert torch.equal(got["argmax"], want["argmax"])
        assert torch.allclose(got["entropy"], want["entropy"], rtol=1e-9, atol=1e-12)
        assert torch.allclose(got["max_weight"], want["max_weight"], rtol=1e-10)
        with pytest.raises(NotImplementedError, match="shard"):
            ideal.nearest(x)
        # class-conditional: rank 0's shard holds no image of label 1, rank 1's none of label 0
        labels = torch.tensor([0] * 4 + [1] * 5)
        cond = IdealDenoiser(mine, labels=distributed.shard(labels), process_group=dist.group.WORLD)
        full = IdealDenoiser(Y, labels=labels)
        for y in (0, 1):
            assert torch.allclose(cond.conditional(y)(x, sigma), full.conditional(y)(x, sigma), rtol=1e-10)
            assert torch.allclose(cond.log_density(x, sigma, y=y), full.log_density(x, sigma, y=y), rtol=1e-12)
    finally:
        dist.destroy_process_group()


def test_sharded_machines_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous")), nprocs=2, join=True)


def test_merge_of_disjoint_states_is_the_whole_softmax():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 11, generator=g, dtype=DT) * 30
    logits[0, :6] = -float("inf")  # query 0: every item of the first part masked out
    v = torch.randn(11, 3, generator=g, dtype=DT)
    a, b = OnlineSoftmax(track_entropy=True), OnlineSoftmax(track_entropy=True)
    a.update(logits[:, :6], values=v[:6])
    b.update(logits[:, 6:], values=v[6:])
    a.merge(b)
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(a.mean(), p @ v)
    torch.testing.assert_close(a.logsumexp(), torch.logsumexp(logits, -1))
    H = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(-1)
    torch.testing.assert_close(a.entropy(), H)
    # a finished average (mean, lse) merges like a streamed one
    c = OnlineSoftmax.from_mean(torch.softmax(logits[:, 6:], -1) @ v[6:],
                                torch.logsumexp(logits[:, 6:], -1))
    d = OnlineSoftmax()
    d.update(logits[:, :6], values=v[:6])
    torch.testing.assert_close(d.merge(c).mean(), p @ v)
    with pytest.raises(ValueError, match="lse must have shape"):
        OnlineSoftmax.from_mean(v, torch.zeros(5))


def test_process_group_needs_an_initialised_group():
    Y, x, sigma = _data()
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        IdealDenoiser(Y, process_group=object(), backend="stream")(x, sigma)
