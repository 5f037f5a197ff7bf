"""惠企政策 / Policy matching."""
