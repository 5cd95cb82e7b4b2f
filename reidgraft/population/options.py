"""The population methods' names and defaults, importing nothing: the config reads them here
without loading torch's machinery (as it reads the grafting options)."""

from __future__ import annotations

# What the K models exchange: nothing, a graft at epoch ends (the papers'), a mutual-learning
# loss every step (DML), or a pull toward their mean (PAPA).
POPULATIONS = ("none", "graft", "dml", "papa")
# PAPA's variants (Jolicoeur-Martineau et al., TMLR 2024): a small pull toward the mean every few
# steps (gradual, their "PAPA"), every model replaced by the mean every few epochs (all,
# "PAPA-all"), or disjoint random pairs replaced by their mean every few epochs (pairs, "PAPA-2").
PAPA_MODES = ("gradual", "all", "pairs")
# Their published defaults (docs/method.md section 10): alpha 0.99 every 10 steps (our rate is
# 1 - alpha), the pull scaled by the learning rate's share of its initial value; PAPA-all and
# PAPA-2 every 5 epochs (their CIFAR setting).
PAPA_RATE = 0.01
PAPA_EVERY = 10
PAPA_EVERY_EPOCHS = 5
