"""Text in, ids out: characters and their vocabulary, the stream cutter, the corpus cache, words
and labelled texts, word vectors. Imports nothing above it."""
