"""Demo and test tooling, kept out of the model-loading path: random-weight models and the
demo's policy of falling back to them when real weights cannot be loaded here."""
