"""Text classification: the recurrent network, its training and evaluation, the n-gram part,
and the TF-IDF + linear SVM baseline."""
