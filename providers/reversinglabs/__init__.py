"""ReversingLabs Spectra Intelligence: customer usage (TCA-9999) and quota limits."""
