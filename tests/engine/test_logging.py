from reidgraft.engine.logging import epoch_line


def record(**scores):
    return {"epoch": 5, "loss": [1.0, 2.0], "alphas": None, **scores}


def scores(*values):
    return [{"model": k, "mAP": v} for k, v in enumerate(values)]


def test_the_epoch_line_names_test_and_validation_scores_apart():
    assert epoch_line(record(metrics=scores(0.1, 0.2)), 9, "mAP").endswith("  mAP 0.100 0.200")
    alone = epoch_line(record(val_metrics=scores(0.3, 0.4)), 9, "mAP")
    assert alone.endswith("  validation mAP 0.300 0.400") and "test" not in alone
    both = epoch_line(record(metrics=scores(0.1, 0.2), val_metrics=scores(0.3, 0.4)), 9, "mAP")
    assert both.endswith("  test mAP 0.100 0.200  validation mAP 0.300 0.400")
    assert epoch_line(record(), 9, "mAP") == "epoch 5/9  loss 1.000 2.000"
