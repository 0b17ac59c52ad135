"""The SEDONA search: relaxation (Sec. 3.2), bilevel optimisation (Sec. 3.3), discretisation (Sec. 3.4)."""
