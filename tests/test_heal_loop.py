"""The training loop: determinism, resume equal to an uninterrupted run, a clock stop, and two gloo
processes that end with identical rows."""

import os
import socket

import pytest
import torch

from transplant.heal.loop import LoopConfig, learning_rate
from transplant.heal.pipeline import HealOptions, partial_dir, prepare

TEXT = ("The quick brown fox jumps over the lazy dog. def heal(rows):\n    return rows * 2\n"
        "Über den Wolken muss die Freiheit wohl grenzenlos sein. 東京は日本の首都です。\n") * 30


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    from transplant.pipeline import TransplantOptions, run

    root = tmp_path_factory.mktemp("loop")
    folder = run(TransplantOptions(base=str(tiny["bl_untied"]), donor=str(tiny["tok_sp"]), method="fvt",
                                   output=str(root / "t"), progress=False))
    (root / "text.txt").write_text(TEXT)
    return folder, root / "text.txt"


def options(setup, output, **kw) -> HealOptions:
    folder, text = setup
    base = dict(folder=str(folder), texts=[str(text)], output=str(output), steps=4, seq_len=32, lr=1e-2, warmup=2,
                allow_eval_overlap=True, progress=False, checkpoint_minutes=None)
    return HealOptions(**{**base, **kw})


def trained(opts, on_step=None):
    session = prepare(opts)
    state = session.train(on_step)
    return session, state


class Stop(Exception):
    pass


def test_same_seed_same_rows_other_seed_other_rows(setup, tmp_path):
    a = trained(options(setup, tmp_path / "a"))[0].trainable.state()
    b = trained(options(setup, tmp_path / "b"))[0].trainable.state()
    c = trained(options(setup, tmp_path / "c", seed=1))[0].trainable.state()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_gives_the_uninterrupted_result(setup, tmp_path):
    whole_session, whole = trained(options(setup, tmp_path / "whole", train="lora"))

    def crash(state):
        if state.step == 3:
            raise Stop  # killed after the checkpoint of step 2 and one more step

    out = tmp_path / "resumed"
    with pytest.raises(Stop):
        trained(options(setup, out, train="lora", checkpoint_steps=2), on_step=crash)
    assert (partial_dir(out) / "state.pt").is_file()
    resumed_session, resumed = trained(options(setup, out, train="lora", checkpoint_steps=2, resume=True))
    assert resumed.step == whole.step == 4
    assert resumed.losses == pytest.approx(whole.losses, rel=0, abs=0)
    a, b = whole_session.trainable.state(), resumed_session.trainable.state()
    assert all(torch.equal(a[k], b[k]) for k in a)
    resumed_session.write(resumed)
    assert not partial_dir(out).exists()  # the checkpoints go once the healed folder is written


def test_resume_refuses_other_settings(setup, tmp_path):
    from transplant.errors import UserError

    out = tmp_path / "x"
    with pytest.raises(Stop):
        trained(options(setup, out, checkpoint_steps=1), on_step=lambda s: (_ for _ in ()).throw(Stop))
    with pytest.raises(UserError, match="other settings \\(lr differ\\)"):
        trained(options(setup, out, resume=True, lr=5e-3))


def test_minutes_stop_the_clock_and_callbacks_do_not_count(setup, tmp_path):
    import time

    def slow_eval(state):
        time.sleep(1.0)  # an evaluation: outside the training clock

    session, state = trained(options(setup, tmp_path / "m", steps=None, minutes=0.005), on_step=slow_eval)
    assert state.step >= 1 and state.seconds >= 0.3
    assert state.seconds < 1.0 * state.step  # the sleeps are not in it


def test_warmup_then_constant():
    config = LoopConfig(steps=10, lr=1e-3, warmup=4)
    assert [learning_rate(config, s) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, opts, result_dir):
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    session = prepare(opts)
    first = []
    draw = session.task.batch
    session.task.batch = lambda fn: first.append(draw(fn)) or first[-1]
    state = session.train()
    out = session.write(state)
    torch.save({"state": session.trainable.state(), "inputs": first[0].student.inputs, "out": str(out),
                "world": session.ranks.world, "tokens": state.tokens}, result_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_two_gloo_processes_agree(setup, tmp_path):
    import torch.multiprocessing as mp

    opts = options(setup, tmp_path / "ddp", steps=3, device="cpu")
    mp.spawn(_worker, args=(2, _free_port(), opts, tmp_path), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert not torch.equal(r0["inputs"], r1["inputs"])  # each rank drew its own windows
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    initial = prepare(options(setup, tmp_path / "one", steps=3)).trainable.state()
    assert any(not torch.equal(initial[k], r0["state"][k]) for k in initial)  # they did train
    assert r0["out"] == str(tmp_path / "ddp") and r1["out"] == "None"  # only rank 0 writes
    assert r0["tokens"] == r1["tokens"] > 3 * 4 * 16  # counted over both ranks
