"""Label quality: noise injection, the label-issue finder, the illusion of accuracy, subgroups."""
