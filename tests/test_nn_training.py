"""fastrnn.nn in real training: truncated BPTT, a small task against torch.nn, and DDP."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fastrnn.nn as fnn


class SequenceModel(torch.nn.Module):
    """An LSTM and a linear read-out, built on either library's LSTM class."""

    def __init__(self, lstm_class, input_size=2, hidden_size=24, num_layers=2):
        super().__init__()
        self.rnn = lstm_class(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = torch.nn.Linear(hidden_size, 1)

    def forward(self, x, state=None):
        y, state = self.rnn(x, state)
        return self.head(y).squeeze(-1), state


def twin_models(dtype=torch.float64, **kwargs):
    torch.manual_seed(0)
    reference = SequenceModel(torch.nn.LSTM, **kwargs).to(dtype)
    ours = SequenceModel(fnn.LSTM, **kwargs).to(dtype)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def sum_task(batch, steps, generator, dtype=torch.float64):
    """Inputs: a value and a marker per step; target at each step: the running sum of the
    marked values so far (a task that needs memory across steps)."""
    values = torch.rand(batch, steps, generator=generator, dtype=dtype)
    marks = (torch.rand(batch, steps, generator=generator) < 0.3).to(dtype)
    return torch.stack([values, marks], -1), torch.cumsum(values * marks, 1)


def optimizer_step(opt, loss):
    """One step of opt on loss's gradients; returns the loss's value."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


@pytest.mark.slow
def test_training_matches_torch_and_learns():
    # Same initial weights, same data, same optimiser: the loss curves agree step by step, and
    # the model learns the task: held-out MSE under 0.02, against 0.47 for predicting each
    # step's mean.
    reference, ours = twin_models()
    x_test, target_test = sum_task(1000, 12, torch.Generator().manual_seed(9))
    curves = []
    for model in (reference, ours):
        generator = torch.Generator().manual_seed(1)
        opt = torch.optim.Adam(model.parameters(), lr=0.02)
        losses = []
        for _ in range(200):
            x, target = sum_task(16, 12, generator)
            losses.append(optimizer_step(opt, torch.nn.functional.mse_loss(model(x)[0], target)))
        curves.append(torch.tensor(losses))
    torch.testing.assert_close(curves[1], curves[0], rtol=1e-6, atol=1e-8)
    with torch.no_grad():
        assert torch.nn.functional.mse_loss(ours(x_test)[0], target_test) < 0.02


def test_truncated_bptt_over_consecutive_chunks():
    # One long sequence per batch row, trained chunk by chunk: each chunk starts from the
    # previous chunk's final state, detached, so gradients stop at the chunk boundary.
    reference, ours = twin_models()
    generator = torch.Generator().manual_seed(2)
    x, target = sum_task(4, 60, generator)
    curves = []
    for model in (reference, ours):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        state, losses = None, []
        for start in range(0, 60, 10):
            out, state = model(x[:, start:start + 10], state)
            state = tuple(s.detach() for s in state)
            assert not any(s.requires_grad for s in state)
            losses.append(optimizer_step(opt, torch.nn.functional.mse_loss(out, target[:, start:start + 10])))
        curves.append(torch.tensor(losses))
    torch.testing.assert_close(curves[1], curves[0], rtol=1e-8, atol=1e-10)
    # The carried state matters: starting every chunk from zeros gives different losses.
    _, fresh = twin_models()
    out_fresh, _ = fresh(x[:, 10:20])
    out_carried, _ = fresh(x[:, 10:20], fresh(x[:, :10])[1])
    assert not torch.allclose(out_fresh, out_carried)


def _ddp_worker(rank, world_size, init_file, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        _, model = twin_models()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        x, target = sum_task(8, 9, torch.Generator().manual_seed(3))
        half = slice(rank * 4, rank * 4 + 4)
        loss = torch.nn.functional.mse_loss(ddp(x[half])[0], target[half])
        loss.backward()
        if rank == 0:
            torch.save({name: p.grad for name, p in model.named_parameters()}, result_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_data_parallel_matches_single_process():
    # Two gloo processes, half the batch each: DDP's averaged gradients equal one process's
    # gradients on the whole batch.
    with tempfile.TemporaryDirectory() as tmp:
        init_file, result_file = os.path.join(tmp, "init"), os.path.join(tmp, "grads.pt")
        mp.spawn(_ddp_worker, args=(2, init_file, result_file), nprocs=2, join=True)
        distributed = torch.load(result_file)
    _, model = twin_models()
    x, target = sum_task(8, 9, torch.Generator().manual_seed(3))
    torch.nn.functional.mse_loss(model(x)[0], target).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(distributed[name], p.grad, rtol=1e-10, atol=1e-12)
