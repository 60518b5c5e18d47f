"""`lsvr bench`: measurements of lsvr against its baselines and limits, in one run each."""
