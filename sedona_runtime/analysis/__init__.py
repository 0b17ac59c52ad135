"""Static analysis of networks and heads: parameter and FLOP (multiply-add) counts."""
