import pytest

from rcl.selection import select_epoch

# epoch:            1     2     3     4     5
HISTORY = [
    dict(val_f1_macro=0.50, val_cer=0.40, val_expected_cost=0.90),
    dict(val_f1_macro=0.62, val_cer=0.30, val_expected_cost=0.70),
    dict(val_f1_macro=0.58, val_cer=0.12, val_expected_cost=0.40),
    dict(val_f1_macro=0.55, val_cer=0.08, val_expected_cost=0.45),
    dict(val_f1_macro=0.60, val_cer=0.20, val_expected_cost=0.50),
]


@pytest.mark.parametrize(
    "rule, kwargs, expected_epoch",
    [
        ("f1", {}, 2),
        ("f1_cer_cap", {"cer_cap": 0.15}, 3),
        ("f1_cer_cap", {"cer_cap": 0.01}, 4),  # nothing meets the cap: the lowest CER
        ("cer_f1_floor", {"f1_floor": 0.57}, 3),
        ("cer_f1_floor", {"f1_floor": 0.9}, 2),  # nothing meets the floor: the best F1
        ("expected_cost", {}, 3),
        ("last", {}, 5),
    ],
)
def test_each_rule_picks_the_right_epoch(rule, kwargs, expected_epoch):
    assert select_epoch(HISTORY, rule, **kwargs) + 1 == expected_epoch


def test_ties_go_to_the_earliest_epoch_and_undefined_cer_is_worst():
    history = [dict(val_f1_macro=0.5, val_cer=None, val_expected_cost=1), dict(val_f1_macro=0.5, val_cer=0.2,
                                                                             val_expected_cost=1)]
    assert select_epoch(history, "f1") == 1  # same F1: the defined, lower CER wins
    assert select_epoch(history, "expected_cost") == 0


def test_bad_rules_are_clear_errors():
    with pytest.raises(ValueError, match="unknown selection rule 'best'"):
        select_epoch(HISTORY, "best")
    with pytest.raises(ValueError, match="needs cer_cap"):
        select_epoch(HISTORY, "f1_cer_cap")
    with pytest.raises(ValueError, match="no epochs"):
        select_epoch([], "f1")
