"""Lightning training of the digit judge against a plain reference loop."""
import torch
import torch.nn.functional as F

from dit3d.metrics.images import DigitClassifier, real_digits
from dit3d.models.digit_classifier import EpochPermutation, fit_digit_classifier, shift_batch


def reference_fit(net, x, y, *, seed, epochs, batch_size, lr, weight_decay, max_shift):
    """The recipe written out by hand: one permutation per epoch, then one translation draw per batch."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * -(-len(y) // batch_size))
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(net(shift_batch(x[idx], g, max_shift)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def test_lightning_fit_equals_the_reference_loop_bit_for_bit():
    x, y = (t[:100] for t in real_digits("train"))
    nets = []
    settings = dict(seed=5, epochs=2, batch_size=32, lr=2e-3, weight_decay=1e-4, max_shift=1)  # batches 32, 32, 32, 4
    for fit in (fit_digit_classifier, reference_fit):
        torch.manual_seed(0)
        nets.append(fit(DigitClassifier(), x, y, **settings))
    ours, ref = (n.state_dict() for n in nets)
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    torch.manual_seed(0)
    assert not torch.equal(DigitClassifier().conv1.weight, ours["conv1.weight"])  # it did train
    assert not nets[0].training


def test_shift_batch_translates_within_one_pixel_and_fills_the_background():
    x = torch.full((3, 1, 4, 4), -1.0)
    x[:, :, 1:3, 1:3] = 1.0  # a 2x2 square in the middle
    out = shift_batch(x, torch.Generator().manual_seed(0), 1)
    assert out.shape == x.shape and set(out.unique().tolist()) == {-1.0, 1.0}
    assert ((out == 1).sum(dim=(1, 2, 3)) == 4).all()  # a one-pixel shift keeps the square whole
    assert torch.equal(shift_batch(x, torch.Generator(), 0), x)


def test_epoch_permutation_draws_exactly_one_permutation_per_epoch():
    g, ref = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    sampler = EpochPermutation(7, g)
    for _ in range(2):
        assert list(sampler) == torch.randperm(7, generator=ref).tolist()
    assert len(sampler) == 7
