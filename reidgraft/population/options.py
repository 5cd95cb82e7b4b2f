"""The population methods' defaults, importing nothing: the config reads them here without
loading torch's machinery (as it reads the grafting options). Their names are registry.py's."""

from __future__ import annotations

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
