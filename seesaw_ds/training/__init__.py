"""The training entry's room: pieces of ``python -m seesaw_ds.train`` that stand on their own
(``divergence``: when a run has diverged and must stop)."""
