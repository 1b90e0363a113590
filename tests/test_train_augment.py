"""fit's augmentation hook and crop_flip (random shifted crop + horizontal flip, seeded)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnmend.errors import DataError, NnmendError
from nnmend.train import crop_flip, fit


def _windows(img: torch.Tensor, pad: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every crop of the zero-padded image, flipped or not: what crop_flip may return."""
    h, w = img.shape[1:]
    p = F.pad(img, (pad, pad, pad, pad))
    return [(dy, dx, fl, p[:, dy:dy + h, dx:dx + w].flip(2) if fl else p[:, dy:dy + h, dx:dx + w])
            for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for fl in (False, True)]


def test_crop_flip_returns_a_shifted_possibly_flipped_window_of_each_image():
    torch.manual_seed(0)
    x = torch.rand(200, 3, 6, 5) + 0.5          # no zeros inside, so every window is unique
    y = crop_flip(2)(x, torch.Generator().manual_seed(3))
    assert y.shape == x.shape
    seen = set()
    for i in range(len(x)):
        hits = [(dy, dx, fl) for dy, dx, fl, win in _windows(x[i], 2) if torch.equal(win, y[i])]
        assert len(hits) == 1, f"image {i}: not a crop/flip of its input"
        seen.add(hits[0])
    assert {fl for _, _, fl in seen} == {False, True}            # both flips occur
    assert {(dy, dx) for dy, dx, _ in seen} >= {(0, 0), (2, 2), (4, 4), (0, 4)}   # the extreme shifts occur


def test_crop_flip_is_reproducible_from_the_generator_seed():
    x = torch.rand(64, 3, 8, 8)
    a, b = (crop_flip(4)(x, torch.Generator().manual_seed(7)) for _ in range(2))
    c = crop_flip(4)(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_crop_flip_refuses_bad_input():
    with pytest.raises(NnmendError, match="pad=-1"):
        crop_flip(-1)
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        crop_flip(1)(torch.rand(3, 8, 8), torch.Generator())


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))


def test_fit_applies_augment_to_every_batch_and_is_seeded():
    x, y = torch.rand(50, 3, 4, 4), torch.randint(0, 3, (50,))
    calls = []

    def spy(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        calls.append(len(xb))
        return crop_flip(1)(xb, gen)

    nets = [_net() for _ in range(3)]
    fit(nets[0], (x, y), epochs=2, batch_size=16, seed=1, augment=spy, progress_bar=False)
    assert calls == [16, 16, 16, 2] * 2
    fit(nets[1], (x, y), epochs=2, batch_size=16, seed=1, augment=crop_flip(1), progress_bar=False)
    fit(nets[2], (x, y), epochs=2, batch_size=16, seed=1, progress_bar=False)
    w = [n[1].weight for n in nets]
    assert torch.equal(w[0], w[1])            # same seed, same augmented batches
    assert not torch.allclose(w[0], w[2])     # the hook changed what was trained on


def test_fit_without_augment_is_unchanged():
    x, y = torch.rand(40, 3, 4, 4), torch.randint(0, 3, (40,))
    a, b = _net(), _net()
    fit(a, (x, y), epochs=2, batch_size=16, seed=2, progress_bar=False)
    fit(b, (x, y), epochs=2, batch_size=16, seed=2, augment=None, progress_bar=False)
    assert torch.equal(a[1].weight, b[1].weight)
