"""KPIs: measures over the store, rolled up by practice, locality and system, with intervals and disclosure control."""
