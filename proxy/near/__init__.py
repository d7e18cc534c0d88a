"""The near cache: HIT responses as prebuilt bytes in the sidecar's memory, in front of the store,
and how copies are invalidated (push from the store, or a recheck bound)."""
