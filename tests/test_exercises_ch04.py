"""Chapter 4 exercise checks: each accepts the reference and an independent solution, reports a stub as
not attempted, and rejects the plausible mistakes with a message naming them."""
import torch

from course_lib.exercises import ch04
from course_lib.locality import wiener_masks


def _stub(*args):
    raise NotImplementedError


def test_wiener_mask_check():
    assert ch04.check_wiener_mask(ch04.reference_wiener_mask).correct
    assert ch04.check_wiener_mask(_stub).status == "not attempted"

    def own_diagonal(L, tau):          # row q normalised by its own diagonal L[q, q]
        M = (L / torch.diagonal(L)[:, None]).abs()
        return M >= tau * M.max()

    r = ch04.check_wiener_mask(own_diagonal)
    assert r.status == "wrong" and "own" in r.message

    def correlation(L, tau):           # normalised by sqrt(L[q, q] L[n, n])
        dg = torch.diagonal(L).sqrt()
        M = (L / dg[:, None] / dg[None, :]).abs()
        return M >= tau * M.max()
    assert ch04.check_wiener_mask(correlation).status == "wrong"

    def per_row_max(L, tau):
        M = (L / torch.diagonal(L)[:, None]).abs()
        return (M >= tau * M.amax(1, keepdim=True)).T
    assert ch04.check_wiener_mask(per_row_max).status == "wrong"


def test_wiener_mask_check_agrees_with_the_library():
    """The library's wiener_masks on data equals the exercise's reference on the same Wiener matrix."""
    from course_lib.denoisers import GaussianDenoiser

    g = torch.Generator().manual_seed(0)
    Y = torch.randn(30, 1, 3, 3, generator=g, dtype=torch.float64) * torch.linspace(0.2, 2, 9).reshape(1, 1, 3, 3)
    G = GaussianDenoiser.from_data(Y, cache=False)
    assert torch.equal(ch04.reference_wiener_mask(G.jacobian(0.5), 0.1), wiener_masks(G, 0.5, 0.1))


def test_streaming_average_check():
    assert ch04.check_streaming_average(ch04.reference_streaming_average).correct
    assert ch04.check_streaming_average(lambda l, v: torch.softmax(torch.cat(l, 1), 1) @ torch.cat(v)).correct
    assert ch04.check_streaming_average(_stub).status == "not attempted"

    def per_chunk(ls, vs):             # the public code's WeightedStreamingSoftmax
        acc = sum(torch.softmax(l, 1) @ v for l, v in zip(ls, vs))
        return acc / len(ls)
    r = ch04.check_streaming_average(per_chunk)
    assert r.status == "wrong" and "per-chunk" in r.message

    def no_max(ls, vs):                # exp without the running max overflows / underflows
        w = [torch.exp(l) for l in ls]
        return sum(wi @ v for wi, v in zip(w, vs)) / sum(wi.sum(1, keepdim=True) for wi in w)
    assert ch04.check_streaming_average(no_max).status == "wrong"


def test_unpermute_field_check():
    assert ch04.check_unpermute_field(ch04.reference_unpermute_field).correct
    assert ch04.check_unpermute_field(lambda f, p: f[torch.argsort(p)]).correct
    assert ch04.check_unpermute_field(_stub).status == "not attempted"
    r = ch04.check_unpermute_field(lambda f, p: f[p])
    assert r.status == "wrong" and "second time" in r.message
