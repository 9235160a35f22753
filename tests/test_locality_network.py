"""Chapter 4 claims on the committed networks (need MNIST and the checkpoints).

1. The averaged sensitivity field of the MNIST UNet, without the output pixel's own entry, has the
   shape of the Wiener field of its training data (cosine > 0.6 at sigma = 0.5, 1, 2; measured
   0.78 / 0.82 / 0.87 on 16 images and 5 pixels).
2. The UNet trained on pixel-permuted MNIST (``mnist_perm_unet_book``, 9,500 CPU steps, see
   data/checkpoints/README.md) follows the moved statistics: without the centre entry, its un-permuted
   field correlates with the original data's Wiener field (cosine 0.58 at sigma = 1, 0.63 at sigma = 2
   on 16 images and 5 pixels; 0.14 / 0.18 after its first 3,000 steps), while its field as seen has
   cosine about 0 with the Wiener field at the same input position (the architecture's prediction),
   and only 6% of its mass stays within 3 pixels of the output pixel in its own input (62% for the
   ordinary UNet). The ordinary UNet still matches its Wiener field more closely (0.82 / 0.87).
"""
import pytest
import torch

from course_lib.nets import list_pretrained, load_pretrained

PIXELS = [(14, 14), (8, 10), (20, 18), (12, 16), (17, 11)]


def _setup(require_data):
    from course_lib.data import load_dataset
    from course_lib.denoisers import GaussianDenoiser

    require_data("mnist", "mnist_train_5k.npz")
    Y, _ = load_dataset("mnist", split="train_5k")
    return Y, GaussianDenoiser.from_data(Y)


def test_unet_field_has_the_shape_of_the_wiener_field(require_data):
    from course_lib.locality_table import permutation_scores, permuted_fields

    if "mnist_unet_book" not in list_pretrained():
        pytest.skip("mnist_unet_book not committed")
    Y, g = _setup(require_data)
    net = load_pretrained("mnist_unet_book")
    ident = torch.arange(784)
    for s in (0.5, 1.0, 2.0):
        sc = permutation_scores(permuted_fields(net, ident, Y[:16], s, PIXELS), g, s, PIXELS)
        assert sc["cos_data"] > 0.6, f"sigma={s}: {sc}"


def test_permuted_network_follows_the_moved_statistics(require_data):
    from course_lib.locality_table import permutation_scores, permuted_fields
    from course_lib.permute import pixel_permutation

    if "mnist_perm_unet_book" not in list_pretrained():
        pytest.skip("mnist_perm_unet_book not committed")
    Y, g = _setup(require_data)
    net = load_pretrained("mnist_perm_unet_book")
    assert net.train_subset["pixel_permute_seed"] == 0
    perm = pixel_permutation(28, 28, seed=0)
    ident = torch.arange(784)
    ordinary = load_pretrained("mnist_unet_book") if "mnist_unet_book" in list_pretrained() else None
    for s in (1.0, 2.0):
        sc = permutation_scores(permuted_fields(net, perm, Y[:16], s, PIXELS), g, s, PIXELS)
        assert sc["cos_data"] > 0.45 and sc["cos_data"] > sc["cos_arch"] + 0.4, f"sigma={s}: {sc}"
        assert sc["local_seen"] < 0.15, f"sigma={s}: {sc}"
        if ordinary is not None:
            ref = permutation_scores(permuted_fields(ordinary, ident, Y[:16], s, PIXELS), g, s, PIXELS)
            assert ref["local_seen"] > sc["local_seen"] + 0.3 and ref["cos_data"] > sc["cos_data"] + 0.1, (sc, ref)
