"""Chapter 5 exercise checks: accept the reference, say "not attempted" for a stub, reject plausible mistakes."""
import torch

from course_lib.exercises import ch05


def _stub(*args):
    raise NotImplementedError


def test_locally_consistent():
    assert ch05.check_locally_consistent(ch05.reference_locally_consistent).correct

    def solution(img):  # explicit neighbour counting with modular indices
        H, W = img.shape
        r = torch.arange(H)
        c = torch.arange(W)
        total = torch.zeros_like(img)
        for i in (-1, 0, 1):
            for j in (-1, 0, 1):
                total += img[(r + i) % H][:, (c + j) % W]
        return (total > 0) == (img > 0)

    assert ch05.check_locally_consistent(solution).correct
    assert ch05.check_locally_consistent(_stub).status == "not attempted"

    def zero_padded(img):
        s = torch.nn.functional.conv2d(img[None, None], torch.ones(1, 1, 3, 3), padding=1)[0, 0]
        return torch.sign(s) == img

    def without_centre(img):
        s = sum(torch.roll(img, (i, j), (0, 1)) for i in (-1, 0, 1) for j in (-1, 0, 1)) - img
        return (s >= 0) == (img > 0)

    def not_bool(img):
        return ch05.reference_locally_consistent(img).float()

    for wrong in (zero_padded, without_centre, not_bool):
        assert ch05.check_locally_consistent(wrong).status == "wrong", wrong.__name__


def test_els_pixel():
    assert ch05.check_els_pixel(ch05.reference_els_pixel).correct

    def solution(patch, train, sigma):  # loops over locations, vectorised over images
        C, P, _ = patch.shape
        h = P // 2
        Y = torch.nn.functional.pad(train, (h, h, h, h), mode="circular")
        N, _, H, W = train.shape
        logits, centres = [], []
        for r in range(H):
            for c in range(W):
                p = Y[:, :, r:r + P, c:c + P]
                logits.append(-((p - patch) ** 2).sum((1, 2, 3)) / (2 * sigma**2))
                centres.append(train[:, :, r, c])
        w = torch.softmax(torch.cat(logits), 0)
        return w @ torch.cat(centres)

    assert ch05.check_els_pixel(solution).correct
    assert ch05.check_els_pixel(_stub).status == "not attempted"

    def whole_patch_mean(patch, train, sigma):  # averages the mean of each patch, not its centre
        C, P, _ = patch.shape
        from course_lib.patches import extract_patches
        T = extract_patches(train, P, "circular").reshape(-1, C, P * P)
        w = torch.softmax(-((T.reshape(len(T), -1) - patch.reshape(1, -1)) ** 2).sum(-1) / (2 * sigma**2), 0)
        return w @ T.mean(-1)

    def local_only(patch, train, sigma):  # LS-like: only the patch at the image centre location
        C, P, _ = patch.shape
        h = P // 2
        r, c = train.shape[2] // 2, train.shape[3] // 2
        p = train[:, :, r - h:r + h + 1, c - h:c + h + 1]
        w = torch.softmax(-((p - patch) ** 2).sum((1, 2, 3)) / (2 * sigma**2), 0)
        return w @ train[:, :, r, c]

    for wrong in (whole_patch_mean, local_only):
        assert ch05.check_els_pixel(wrong).status == "wrong", wrong.__name__
    assert "CENTRE" in ch05.check_els_pixel(local_only).message


def test_dictionary_size():
    assert ch05.check_dictionary_size(ch05.reference_dictionary_size).correct

    def solution(r, c, H, W, P):
        h = P // 2

        def count(i, n):
            interior = h <= i <= n - 1 - h
            return n - 2 * h if interior else 1

        return count(r, H) * count(c, W)

    assert ch05.check_dictionary_size(solution).correct
    assert ch05.check_dictionary_size(_stub).status == "not attempted"

    def everything(r, c, H, W, P):  # circular ELS: every location
        return H * W

    def edge_whole_edge(r, c, H, W, P):  # forgets that edge rows must match the SAME distance
        h = P // 2
        rin, cin = h <= r <= H - 1 - h, h <= c <= W - 1 - h
        return (H - 2 * h if rin else h) * (W - 2 * h if cin else h)

    for wrong in (everything, edge_whole_edge):
        assert ch05.check_dictionary_size(wrong).status == "wrong", wrong.__name__
