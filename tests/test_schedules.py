"""The learning-rate schedules (step, cosine, linear, triangular; counted in epochs or steps),
their refusals, and today's configs' factors unchanged."""

import math

import pytest
from tests.support import ROOT, one_line, train

from lsvr.config import OptimConfig
from lsvr.config_file import load_config
from lsvr.errors import InputError
from lsvr.train.optim import Schedule, check_schedule


def factors(cfg: OptimConfig, steps: list[int], *, spe: int = 10, total: int = 100) -> list[float]:
    schedule = Schedule(cfg, steps_per_epoch=spe, total_steps=total)
    return [schedule.factor(s) for s in steps]


def old_factor(cfg: OptimConfig, step: int, *, spe: int, total: int) -> float:
    """The schedule as lsvr computed it before linear, triangular and optim.unit, kept verbatim."""
    warmup = round(cfg.warmup_epochs * spe)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "step":
        return 0.1 ** sum(step // spe >= s for s in cfg.lr_steps)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@pytest.mark.parametrize("name", ["alexnet_imagenet", "resnet50_imagenet", "vit_b_16_imagenet", "demo", "debug",
                                  "fashion_mnist", "fashion_mnist_alexnet_gpu"])  # fmt: skip
def test_todays_configs_give_the_same_factors_bit_for_bit(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml").optim
    for spe, total in ((5004, 5004 * 90), (78, 78 * 12), (7, 50), (1, 3)):
        schedule = Schedule(cfg, steps_per_epoch=spe, total_steps=total)
        for step in sorted({*range(0, total, max(1, total // 997)), *range(max(0, total - 3), total + 2)}):
            assert schedule.factor(step) == old_factor(cfg, step, spe=spe, total=total), (name, spe, step)


@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_step_schedule_drops_at_its_boundaries_in_either_unit(unit):
    cfg = OptimConfig(schedule="step", lr_steps=[2, 4] if unit == "epoch" else [20, 40], unit=unit)
    assert factors(cfg, [0, 19, 20, 39, 40, 99]) == [1.0, 1.0, 0.1, 0.1, 0.1**2, 0.1**2]
    fraction = OptimConfig(schedule="step", lr_steps=[1.55], unit="epoch")  # epoch 1.55 of 10 steps: step 16 (15.5)
    assert factors(fraction, [15, 16]) == [1.0, 0.1]


@pytest.mark.parametrize(("unit", "warmup"), [("epoch", 1.0), ("step", 10.0)])
def test_warmup_then_linear_to_the_end_factor(unit, warmup):
    cfg = OptimConfig(schedule="linear", warmup=warmup, unit=unit, end_factor=0.1)
    got = factors(cfg, [0, 4, 9, 10, 55, 100, 120])
    # warm-up: (step + 1) / 10; then 1 - 0.9 * (step - 10) / 90, held at 0.1 past the end
    assert got[:4] == [0.1, 0.5, 1.0, 1.0] and got[5:] == [0.1, 0.1]
    assert got[4] == pytest.approx(0.55)
    assert factors(OptimConfig(schedule="linear"), [0, 50, 100]) == [1.0, 0.5, 0.0]


def test_cosine_with_an_end_factor_and_warmup_in_steps():
    cfg = OptimConfig(schedule="cosine", warmup=4, unit="step", end_factor=0.2)
    got = factors(cfg, [0, 3, 4, 52, 100])
    assert got[:3] == [0.25, 1.0, 1.0] and got[3] == pytest.approx(0.6) and got[4] == pytest.approx(0.2)


@pytest.mark.parametrize(("unit", "peak"), [("epoch", 2.0), ("step", 20.0)])
def test_triangular_rises_to_the_peak_then_falls_to_the_end(unit, peak):
    """FFCV's np.interp(epoch, [0, peak, epochs], [1e-4, 1, 0]) in steps: start at the start factor,
    1 at the peak's step, the end factor at total_steps."""
    cfg = OptimConfig(schedule="triangular", peak=peak, unit=unit)
    got = factors(cfg, [0, 10, 20, 60, 100, 130])
    assert got[0] == 1e-4 and got[1] == pytest.approx(1e-4 + (1 - 1e-4) * 0.5) and got[2] == 1.0
    assert got[3] == pytest.approx(0.5) and got[4:] == [0.0, 0.0]
    ends = OptimConfig(schedule="triangular", peak=peak, unit=unit, start_factor=0.5, end_factor=0.25)
    assert factors(ends, [0, 20, 100]) == [0.5, 1.0, 0.25]


def test_the_schedule_is_a_function_of_total_steps_alone():
    """Rebuilt with another total (a run whose length is fixed late), it is the new run's schedule."""
    cfg = OptimConfig(schedule="triangular", peak=2)
    assert factors(cfg, [60], total=100) == factors(cfg, [60], total=100)
    assert factors(cfg, [60], total=60) == [0.0] and factors(cfg, [20], total=60) == [1.0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr_steps=[30, 20]", "optim.lr_steps must be increasing and >= 0"),
        ("optim.lr_steps=[20, 20]", "optim.lr_steps must be increasing and >= 0"),
        ("optim.unit=hours", "optim.unit must be one of epoch, step"),
        ("optim.warmup=-1", "optim.warmup must be >= 0"),
        ("optim.end_factor=1.5", "optim.end_factor must be in [0, 1]"),
        ("optim.start_factor=-0.1", "optim.start_factor must be in [0, 1]"),
    ],
)
def test_bad_schedule_keys_are_refused(override, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        load_config(None, [override])


def test_bad_schedule_combinations_are_refused():
    for sets, message in [
        (["optim.unit=step", "optim.lr_steps=[100, 250.5]"], "optim.lr_steps counts whole steps"),
        (["optim.unit=step", "optim.warmup=2.5"], "optim.warmup counts whole steps"),
        (["optim.warmup=1", "optim.warmup_epochs=1"], "two names of one warm-up"),
        (["optim.schedule=triangular"], "needs optim.peak > 0"),
        (["optim.schedule=triangular", "optim.peak=2", "optim.warmup_epochs=1"], "no warm-up with it"),
    ]:
        with pytest.raises(InputError, match=message):
            load_config(None, sets)


def test_the_run_length_checks():
    check_schedule(OptimConfig(warmup_epochs=3), steps_per_epoch=10, run_steps=30)  # the whole run warms up: allowed
    with pytest.raises(InputError, match=r"optim.warmup_epochs=3.5 is 35 steps, longer than the run \(30 steps\)"):
        check_schedule(OptimConfig(warmup_epochs=3.5), steps_per_epoch=10, run_steps=30)
    with pytest.raises(InputError, match=r"optim.warmup=31 is 31 steps"):
        check_schedule(OptimConfig(warmup=31, unit="step"), steps_per_epoch=10, run_steps=30)
    tri = {"schedule": "triangular", "unit": "step"}
    check_schedule(OptimConfig(peak=29, **tri), steps_per_epoch=10, run_steps=30)
    for peak in (30, 31):
        with pytest.raises(InputError, match=f"optim.peak={peak} is step {peak}, outside the run"):
            check_schedule(OptimConfig(peak=peak, **tri), steps_per_epoch=10, run_steps=30)
    with pytest.raises(InputError, match=r"optim.peak=0\.01 is step 0, outside the run"):
        check_schedule(OptimConfig(schedule="triangular", peak=0.01), steps_per_epoch=10, run_steps=30)


def test_a_peak_past_the_run_exits_2_before_training(tiny_data, tmp_path, capsys):
    """tiny_data: 5 steps an epoch; 3 epochs are 15 steps, so a peak at epoch 3 is outside."""
    code = train(tmp_path / "run", tiny_data, **{"optim.schedule": "triangular", "optim.peak": 3})
    assert code == 2
    one_line(capsys, "optim.peak=3 is step 15, outside the run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_a_run_steps_its_lr_along_the_triangle(tiny_data, tmp_path):
    """The loop's lr per step is the schedule's: 5 steps, peak at step 2, each step logged."""
    from lsvr.runs.metrics import read_metrics

    extra = {"train.epochs": 1, "optim.lr": 0.01, "optim.schedule": "triangular", "optim.unit": "step",
             "optim.peak": 2, "checkpoint.every_steps": 0}  # fmt: skip
    assert train(tmp_path / "run", tiny_data, **extra) == 0
    logged = [(r["step"], r["lr"]) for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "train"]
    expected = [1e-4, 1e-4 + (1 - 1e-4) / 2, 1.0, 2 / 3, 1 / 3]  # up over steps 0-2, down to 0 at step 5
    assert [step for step, _ in logged] == [1, 2, 3, 4, 5]
    assert [lr for _, lr in logged] == pytest.approx([0.01 * f for f in expected], rel=1e-12)
