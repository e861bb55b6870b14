"""Data: the default corpus (the running interpreter's standard library), text files and ``datasets``,
tokenizers and their token facts (:class:`~masklab.data.tokenizers.TokenInfo`), scikit-learn digits, and exact
toy distributions for sampler tests."""
