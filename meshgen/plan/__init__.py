"""The planning stage: specs + baseline + policy -> :class:`~meshgen.plan.model.Plan`."""
