"""The DARTS search network of examples/darts_search.py (normal + reduction cells built from
fastadl.MixedOp): its search iteration runs on every backend and gives the reference's α (and
PC-DARTS β) gradients, weight gradients, parameters after the step and BatchNorm statistics."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from float64_agreement import (
    KINK_MARGIN,
    ULP_FLOOR,
    assert_as_close_to_float64,
    assert_errors_within,
    first_well_posed,
    kink_distances,
    rounded_rms_errors,
)

from tests.ops.test_backends import device_for, triton_skip_reason

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from darts_search import (  # noqa: E402
    DartsSearchNetwork,
    make_optimizers,
    random_batch,
    search_iteration,
)

from fastadl import MixedOp, convert_mixed_ops  # noqa: E402

pytestmark = [pytest.mark.numerics, pytest.mark.usefixtures("one_thread")]


def test_network_has_darts_structure():
    net = DartsSearchNetwork()  # DARTS' CIFAR-10 search network: C = 16, 8 cells
    assert [c.reduction for c in net.cells] == [
        False,
        False,
        True,
        False,
        False,
        True,
        False,
        False,
    ]
    assert all(len(c.edges) == 14 for c in net.cells)
    assert [p.shape for p in net.arch_parameters()] == [(14, 8), (14, 8)]
    strides = [e.stride for e in net.cells[2].edges]  # reduction: stride 2 on edges from s0, s1
    assert (
        strides == [2, 2] + [2, 2, 1] + [2, 2, 1, 1] + [2, 2, 1, 1, 1]
        and net.cells[3].edges[0].stride == 1
    )
    edges = [m for m in net.modules() if isinstance(m, MixedOp)]
    assert len(edges) == 8 * 14 and {e.C for e in edges} == {16, 32, 64}
    names = {n for n, _ in net.named_parameters()}
    assert {"alphas_normal", "alphas_reduce"} <= names  # in the state_dict, not plain tensors
    assert net.classifier.in_features == 4 * 64
    logits = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)


def arch_and_weight_grads(net, batch):
    """(α/β gradients, weight gradients) of the cross-entropy on ``batch``."""
    loss = torch.nn.functional.cross_entropy(net(batch[0]), batch[1])
    arch, weights = net.arch_parameters(), net.weight_parameters()
    grads = torch.autograd.grad(loss, [*arch, *weights])
    return list(grads[: len(arch)]), list(grads[len(arch) :])


FUSED_CASES = [  # network kwargs, image size (small: few values, so inputs far from kinks exist)
    pytest.param(dict(C=4, layers=3), 9, id="darts-odd-9"),
    pytest.param(dict(C=4, layers=4, partial_channels=2), 8, id="pc-darts"),
    pytest.param(dict(C=4, layers=3, recompute=True), 8, id="recompute"),
]


@pytest.mark.parametrize(("kwargs", "size"), FUSED_CASES)
def test_fused_search_iteration_matches_reference(kwargs, size):
    check_search_iteration("fused", kwargs, size)


def test_triton_search_iteration_matches_reference():
    reason = triton_skip_reason(False)
    if reason:
        pytest.skip(reason)
    if torch.cuda.is_available():
        check_search_iteration("triton", dict(C=4, layers=3), 16)
    else:  # interpreted on CPU: the smallest network that still has both cell types
        check_search_iteration("triton", dict(C=2, layers=3, steps=2, multiplier=2), 8)


def check_search_iteration(backend: str, kwargs: dict, size: int) -> None:
    """α/β and weight gradients, parameters after one search iteration and BatchNorm buffers.
    Float64 is the exact check (where the backend runs float64); float32 must be about as close
    to float64 as the float32 reference is. The gradients are taken on a batch that keeps the
    network KINK_MARGIN away from every ReLU and max-pool kink (float64_agreement.py): at the
    first seed tried before, one ReLU input was 2.5e-8 of its tensor's scale from 0, and the
    float32 reference's α gradient was 0.46 % from float64 on AVX-512, the fast path's on AVX2.
    The parameters after the step and the running statistics move by lr × the gradients and
    by the forward values, so kinks do not jump them."""
    dev = device_for(backend)
    torch.manual_seed(0)
    ref32 = DartsSearchNetwork(num_classes=5, backend="reference", **kwargs).to(dev)
    ref64 = copy.deepcopy(ref32).double()
    nets = {
        "ref32": ref32,
        "ref64": ref64,
        "fast32": convert_mixed_ops(copy.deepcopy(ref32), backend),
    }
    if backend == "fused":  # the Triton kernels are float32 only
        nets["fast64"] = convert_mixed_ops(copy.deepcopy(ref64), backend)
    state64 = copy.deepcopy(ref64.state_dict())  # before any forward moves the statistics
    train = random_batch(4, size, classes=5, device=dev, seed=1)

    def val_images(seed):
        return random_batch(4, size, classes=5, device=dev, seed=seed)[0].double()

    val = random_batch(
        4, size, classes=5, device=dev, seed=first_well_posed(ref64, val_images, range(2, 66))
    )
    # the premise of the margin: the float32 reference's values at the kinks stay well inside it
    x32, x64 = val[0], val[0].double()
    d32 = kink_distances(ref32, x32)
    d64 = kink_distances(ref64, x64)
    assert max(abs(a - b) for a, b in zip(d32, d64, strict=True)) < KINK_MARGIN / 2

    def in_dtype(batch, net):
        return batch[0].to(next(net.parameters()).dtype), batch[1]

    arch_names = ["alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"]
    names = [n for n, _ in ref32.named_parameters()]
    grads = {k: arch_and_weight_grads(net, in_dtype(val, net)) for k, net in nets.items()}
    for net in nets.values():  # one whole search iteration (α step, then weight step)
        search_iteration(net, *make_optimizers(net), in_dtype(train, net), in_dtype(val, net))
    # α/β gradients, weight gradients and the parameters after the step; then the buffers
    values = {k: [*grads[k][0], *grads[k][1], *net.parameters()] for k, net in nets.items()}
    buffers = {k: list(net.buffers()) for k, net in nets.items()}
    what = (
        arch_names[: len(grads["ref32"][0])]
        + [f"d {n}" for n in names if n not in arch_names]
        + names
    )
    buffer_names = [n for n, _ in ref32.named_buffers()]
    if "fast64" in nets:
        pairs = zip(what + buffer_names, values["fast64"] + buffers["fast64"],
                    values["ref64"] + buffers["ref64"], strict=True)  # fmt: skip
        for name, a, b in pairs:
            torch.testing.assert_close(
                a, b, rtol=1e-9, atol=1e-11, msg=lambda m, n=name: f"{n}: {m}"
            )
    if backend == "fused":
        check_cell_path_gradients(nets, state64, val, grads["ref64"], what[: len(values["ref32"])])
        # the gradients were checked above, tensor by tensor; one run each for the parameters
        n_grads = sum(len(g) for g in grads["ref32"])
        values = {k: v[n_grads:] for k, v in values.items()}
        what = what[n_grads:]
    assert_as_close_to_float64(values["fast32"], values["ref32"], values["ref64"], what)
    # running statistics keep the bound they had against the float32 reference, 1e-4
    assert_as_close_to_float64(
        buffers["fast32"], buffers["ref32"], buffers["ref64"], buffer_names, floor=1e-4
    )


def check_cell_path_gradients(nets: dict, state64: dict, val, want64, names) -> None:
    """The cell path's α/β and weight gradients each within 3× the float32 reference's error
    from float64, every path's error the RMS over random roundings of the float64 network
    (float64_agreement.rounded_rms_errors): one run's error per tensor is partly luck, which
    put single runs 3.7-4.3× apart on a few tensors on either instruction set."""
    labels = val[1]

    def compute(net, x):
        arch, weights = arch_and_weight_grads(net, (x, labels))
        return [*arch, *weights]

    want = [*want64[0], *want64[1]]
    x64 = val[0].double()
    e_ref, e_fast = (rounded_rms_errors(nets[k], state64, x64, want, compute)
                     for k in ("ref32", "fast32"))  # fmt: skip
    assert_errors_within(e_fast, e_ref, names[: len(want)], floor=ULP_FLOOR)
