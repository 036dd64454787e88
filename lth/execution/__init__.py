"""What every job shares when it trains into a run directory: the replicate layouts (`layout`,
`replicates`, `workers`), the recorder that takes a level's events to the store, the trackers and
the terminal (`recorder`, `tracking`, `progress`), and a run started from a ticket (`from_ticket`).
The jobs themselves (`run_lottery`, `run_controls`, ...) are in `lth.jobs`."""
